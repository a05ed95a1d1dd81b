// ggml's AMX quantized matrix multiplication (see amx.go).
#include "../../third_party/ggml/src/ggml-cpu/amx/mmq.cpp"

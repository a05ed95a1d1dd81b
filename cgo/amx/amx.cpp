// ggml's AMX buffer type and traits (see amx.go).
#include "../../third_party/ggml/src/ggml-cpu/amx/amx.cpp"

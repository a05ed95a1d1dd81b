// Package amx compiles ggml's AMX matrix kernels (ggml-cpu/amx), which the
// module's ggml-cpu cgo package leaves out. ggml-cpu.cpp calls them when the
// compiler targets a CPU with AMX (-march=native on Intel Sapphire Rapids and
// later defines __AMX_INT8__), so without this package such a build does not
// link. llama.cpp's own CMake build compiles these files into ggml-cpu for
// every target; on other CPUs and with PORTABLE=1 they compile to nothing.
package amx

/*
#cgo CPPFLAGS: -I${SRCDIR}/../../third_party/ggml/src/ggml-cpu -I${SRCDIR}/../../third_party/ggml/src -I${SRCDIR}/../../third_party/ggml/include
#cgo CXXFLAGS: -std=c++17
*/
import "C"

package cgo

/*
#include <stdlib.h>
#include "ggml-backend.h"
#include "shim.h"
*/
import "C"

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"
)

// DeviceType is enum ggml_backend_dev_type.
type DeviceType int

// Device types.
const (
	DeviceCPU   DeviceType = C.GGML_BACKEND_DEVICE_TYPE_CPU
	DeviceGPU   DeviceType = C.GGML_BACKEND_DEVICE_TYPE_GPU
	DeviceIGPU  DeviceType = C.GGML_BACKEND_DEVICE_TYPE_IGPU
	DeviceAccel DeviceType = C.GGML_BACKEND_DEVICE_TYPE_ACCEL
)

func (t DeviceType) String() string {
	return enumName(int(t), "DeviceType", []string{DeviceCPU: "cpu", DeviceGPU: "gpu", DeviceIGPU: "igpu", DeviceAccel: "accel"})
}

// Device describes one ggml backend device.
type Device struct {
	Name        string
	Description string
	Backend     string // the registry's name, e.g. "CPU", "CUDA"
	Type        DeviceType
	MemFree     uint64
	MemTotal    uint64
}

// LoadBackend loads a ggml backend shared library built with
// GGML_BACKEND_DL (for example libggml-cuda.so) and registers its devices.
func LoadBackend(path string) (string, error) {
	Init()
	routeBaseLog(filepath.Dir(path))
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var reg C.ggml_backend_reg_t
	reason := captureReason(func() { reg = C.ggml_backend_load(cpath) })
	if reg == nil {
		if reason != "" {
			return "", errors.New(reason)
		}
		return "", errors.New("ggml_backend_load failed")
	}
	noteDevices()
	return C.GoString(C.ggml_backend_reg_name(reg)), nil
}

// routeBaseLog sends the log of the libggml-base in dir, which a backend
// module built by CMake links (a second copy of ggml's base, whose logger
// would print to stderr), through the same callback and level filter as
// the Go build's, before the backend loads and logs.
func routeBaseLog(dir string) {
	name := "libggml-base.so"
	if runtime.GOOS == "darwin" {
		name = "libggml-base.dylib"
	}
	base := filepath.Join(dir, name)
	if _, err := os.Stat(base); err != nil {
		return
	}
	cbase := C.CString(base)
	defer C.free(unsafe.Pointer(cbase))
	C.pp_log_route_library(cbase)
}

// Devices lists the registered devices.
func Devices() []Device {
	Init()
	n := int(C.ggml_backend_dev_count())
	out := make([]Device, 0, n)
	for i := range n {
		d := C.ggml_backend_dev_get(C.size_t(i))
		var free, total C.size_t
		C.ggml_backend_dev_memory(d, &free, &total)
		out = append(out, Device{
			Name:        C.GoString(C.ggml_backend_dev_name(d)),
			Description: C.GoString(C.ggml_backend_dev_description(d)),
			Backend:     C.GoString(C.ggml_backend_reg_name(C.ggml_backend_dev_backend_reg(d))),
			Type:        DeviceType(C.ggml_backend_dev_type(d)),
			MemFree:     uint64(free),
			MemTotal:    uint64(total),
		})
	}
	return out
}

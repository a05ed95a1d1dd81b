package cgo

/*
#include <stdlib.h>
#include "ggml-backend.h"
*/
import "C"

import (
	"errors"
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
	return C.GoString(C.ggml_backend_reg_name(reg)), nil
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

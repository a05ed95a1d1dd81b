package cgo

/*
#include <stdlib.h>
#include "plugin.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"unsafe"
)

// PluginGraph runs the plug-in's projector and aggregation as ggml graphs
// (plugin.c) on one ggml backend device. It is not safe for concurrent use
// (kernels.NewGraph locks around it); Close frees it, and the projectors and
// histories it made must be closed before.
type PluginGraph struct {
	c       *C.pp_plugin
	device  string
	threads int // CPU threads of its computations (1 on a GPU)
}

// PluginWeights is a projector's weights on the graph's device.
type PluginWeights struct{ c *C.pp_plugin_proj }

// PluginHistory is one user's keys and values on the graph's device.
type PluginHistory struct{ c *C.pp_plugin_res }

// NewPluginGraph opens the ggml device named name (Device.Name, e.g. "CPU",
// "Vulkan0"); threads applies to backends with threads (the CPU).
func NewPluginGraph(name string, threads int) (*PluginGraph, error) {
	Init()
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var buf [512]C.char
	var c *C.pp_plugin
	held := LockDevices()
	reason := captureReason(func() { c = C.pp_plugin_new(cname, C.int(threads), &buf[0], C.size_t(len(buf))) })
	UnlockDevices(held)
	if c == nil {
		msg := C.GoString(&buf[0])
		if reason != "" {
			msg += ": " + reason
		}
		return nil, errors.New(msg)
	}
	g := &PluginGraph{c: c, device: name, threads: 1}
	if name == "CPU" {
		g.threads = threads
	}
	return g, nil
}

// Device is the device's name.
func (g *PluginGraph) Device() string { return g.device }

// Close frees the device context; it is idempotent.
func (g *PluginGraph) Close() error {
	defer UnlockDevices(LockDevices())
	if g.c != nil {
		C.pp_plugin_free(g.c)
		g.c = nil
	}
	return nil
}

func (g *PluginGraph) fail(op string) error {
	return fmt.Errorf("%s on %s: %s", op, g.device, C.GoString(C.pp_plugin_last_error(g.c)))
}

func fptr(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}

// UploadProjector copies a projector's weights (row-major: w1 [dOut][dIn],
// b1 [dOut], w2 [dOut][dOut], b2 [dOut]) to the device. The caller checks
// the sizes.
func (g *PluginGraph) UploadProjector(dIn, dOut int, w1, b1, w2, b2 []float32, scale float32) (io.Closer, error) {
	defer UnlockDevices(LockDevices())
	w := C.pp_plugin_proj_new(g.c, C.int(dIn), C.int(dOut), fptr(w1), fptr(b1), fptr(w2), fptr(b2), C.float(scale))
	runtime.KeepAlive(w1)
	runtime.KeepAlive(b1)
	runtime.KeepAlive(w2)
	runtime.KeepAlive(b2)
	if w == nil {
		return nil, g.fail("upload projector")
	}
	return &PluginWeights{c: w}, nil
}

// Close frees the weights; it is idempotent.
func (w *PluginWeights) Close() error {
	defer UnlockDevices(LockDevices())
	if w.c != nil {
		C.pp_plugin_proj_free(w.c)
		w.c = nil
	}
	return nil
}

// Project runs the projector w (from UploadProjector) over the n rows of in,
// writing out; n >= 1, sizes checked by the caller.
func (g *PluginGraph) Project(w io.Closer, in []float32, n int, out []float32) error {
	defer UnlockDevices(LockDevices())
	pw, ok := w.(*PluginWeights)
	if !ok || pw.c == nil {
		return fmt.Errorf("project on %s: the weights (%T) were not uploaded by this graph or are closed", g.device, w)
	}
	t := &C.pp_plugin_project_task{p: g.c, w: pw.c, in: fptr(in), n: C.int64_t(n), out: fptr(out)}
	var pin runtime.Pinner
	pinAll(&pin, in, out)
	pin.Pin(t)
	RunTask(C.pp_plugin_project_task_run, unsafe.Pointer(t), g.threads)
	pin.Unpin()
	rc := t.rc
	if rc != 0 {
		return g.fail("project")
	}
	return nil
}

// Upload keeps one user's keys [n][dKey] (unit vectors) and
// values [n][dVal] on the device; n >= 1, sizes checked by the caller.
func (g *PluginGraph) Upload(keys, values []float32, n, dKey, dVal int) (io.Closer, error) {
	defer UnlockDevices(LockDevices())
	r := C.pp_plugin_res_new(g.c, fptr(keys), fptr(values), C.int(n), C.int(dKey), C.int(dVal))
	runtime.KeepAlive(keys)
	runtime.KeepAlive(values)
	if r == nil {
		return nil, g.fail("upload history")
	}
	return &PluginHistory{c: r}, nil
}

// Close frees the history; it is idempotent.
func (h *PluginHistory) Close() error {
	defer UnlockDevices(LockDevices())
	if h.c != nil {
		C.pp_plugin_res_free(h.c)
		h.c = nil
	}
	return nil
}

// Aggregate computes each user's softmax(q . k / tau) weights (unit queries
// and keys) and the
// weighted sum of its values in one graph; users come from Upload, all of
// one shape with at least one item. weights may be nil.
func (g *PluginGraph) Aggregate(users []io.Closer, queries []float32, tau float32, out, weights []float32) error {
	defer UnlockDevices(LockDevices())
	if len(users) == 0 {
		return nil
	}
	cs := make([]*C.pp_plugin_res, len(users)) // C pointers in Go memory
	for i, u := range users {
		h, ok := u.(*PluginHistory)
		if !ok || h.c == nil {
			return fmt.Errorf("aggregate on %s: users[%d] (%T) was not uploaded by this graph or is closed", g.device, i, u)
		}
		cs[i] = h.c
	}
	t := &C.pp_plugin_aggregate_task{p: g.c, users: &cs[0], n_users: C.int(len(users)), queries: fptr(queries), tau: C.float(tau),
		out: fptr(out), weights: fptr(weights)}
	var pin runtime.Pinner
	pinAll(&pin, cs)
	pinAll(&pin, queries, out, weights)
	pin.Pin(t)
	RunTask(C.pp_plugin_aggregate_task_run, unsafe.Pointer(t), g.threads)
	pin.Unpin()
	rc := t.rc
	if rc != 0 {
		return g.fail("aggregate")
	}
	return nil
}

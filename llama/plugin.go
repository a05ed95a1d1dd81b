package llama

import (
	"io"

	"github.com/pplug/pplug/cgo"
)

// PluginGraph runs the plug-in's projector and aggregation as ggml graphs
// on one device of the loaded backends (kernels.GraphEngine; persona's
// plug-in path on devices without a kernel library). Its handles are
// io.Closers; it is not safe for concurrent use (kernels.NewGraph
// serialises the calls).
type PluginGraph struct{ g *cgo.PluginGraph }

// NewPluginGraph opens the graph engine on the named device (a Device's
// Name, "CPU" included) with threads for the CPU's part.
func NewPluginGraph(device string, threads int) (*PluginGraph, error) {
	g, err := cgo.NewPluginGraph(device, threads)
	if err != nil {
		return nil, err
	}
	return &PluginGraph{g: g}, nil
}

// Device is the device's name.
func (p *PluginGraph) Device() string { return p.g.Device() }

// Close frees the engine and its device memory.
func (p *PluginGraph) Close() error { return p.g.Close() }

// UploadProjector puts a projector's weights on the device.
func (p *PluginGraph) UploadProjector(dIn, dOut int, w1, b1, w2, b2 []float32, scale float32) (io.Closer, error) {
	return p.g.UploadProjector(dIn, dOut, w1, b1, w2, b2, scale)
}

// Project runs the projector over n input rows.
func (p *PluginGraph) Project(w io.Closer, in []float32, n int, out []float32) error {
	return p.g.Project(w, in, n, out)
}

// Upload puts a user's keys and values on the device.
func (p *PluginGraph) Upload(keys, values []float32, n, dKey, dVal int) (io.Closer, error) {
	return p.g.Upload(keys, values, n, dKey, dVal)
}

// Aggregate pools each user's values by the attention of its query.
func (p *PluginGraph) Aggregate(users []io.Closer, queries []float32, tau float32, out, weights []float32) error {
	return p.g.Aggregate(users, queries, tau, out, weights)
}

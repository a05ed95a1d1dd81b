package llama

import "errors"

var (
	// ErrClosed is returned by methods of a closed Model, Context or Sampler.
	ErrClosed = errors.New("llama: use of closed object")
	// ErrInvalidModel wraps every reason a model file cannot be loaded.
	ErrInvalidModel = errors.New("invalid model file")
	// ErrContextFull means the input does not fit in the context window.
	ErrContextFull = errors.New("context window full")
	// ErrAborted means a decode was stopped through its context.Context.
	ErrAborted = errors.New("decode aborted")
	// ErrNoChatTemplate means the model carries no chat template.
	ErrNoChatTemplate = errors.New("model has no chat template")
)

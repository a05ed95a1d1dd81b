// Package llama is pplug's Go API over llama.cpp: models, tokenizers,
// contexts, decoding of token and embedding-row inputs, sampling, chat
// templates and generation.
//
// # Concurrency
//
//   - Model is safe for concurrent use: tokenization, metadata and creating
//     contexts may happen from many goroutines. Close waits for no one: it
//     marks the model closed and frees it once its last Context is closed.
//   - Context is not meant for concurrent use (a llama_context is one stream
//     of computation), but its methods hold a mutex, so misuse serialises
//     instead of corrupting memory. Use one Context per goroutine; many
//     Contexts may share one Model and decode in parallel. Computations
//     with more than one CPU thread take turns on one C thread, and once a
//     GPU device is registered every call that may use a device holds one
//     process-wide lock (cgo/devicelock.go): ggml's Vulkan backend is not
//     safe for concurrent use.
//   - Sampler belongs to one generation at a time; its methods also lock.
//   - Sequence is the decode state of one generated sequence (its sampler,
//     stop rule, text and log-probabilities) and is not safe for
//     concurrent use. Generate drives one; a batched loop keeps one per
//     sequence, decodes the batch and calls each Sequence's Sample with
//     its output row.
//
// # Resources
//
// Close methods are idempotent. Finalizers free C memory only as a safety net
// for values that were never closed; rely on Close.
//
// # Input rows
//
// DecodeInputs decodes a sequence made of runs of token ids and runs of
// embedding rows (float32, NEmbd each) at consecutive positions. llama.cpp
// cannot mix the two in one batch, so each run is decoded as its own batches.
// This is where pplug's persona rows enter the model.
package llama

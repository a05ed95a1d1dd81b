package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

// Typed options: a command's action reads its flags once, into these, and
// passes them down; the functions below the action take options, not a
// *cli.Context. A flag a command does not have reads as its zero value.

// profileOptions are --profile, --question-id, --task, --fields and
// --max-items.
type profileOptions struct {
	Path string
	Load profile.Options
	// fields and task are the flags as given, for error hints.
	fields, task string
}

func profileOptionsFrom(c *cli.Context) (profileOptions, error) {
	o := profileOptions{Path: c.String("profile"), fields: c.String("fields"), task: c.String("task")}
	o.Load = profile.Options{MaxItems: c.Int("max-items"), QuestionID: c.String("question-id")}
	if o.task != "" {
		t, err := lamp.ParseTask(o.task)
		if err != nil {
			return o, usageError{err}
		}
		o.Load.Task = t
	}
	if o.fields != "" {
		o.Load.Fields = profile.SplitFields(o.fields)
	}
	if o.Path != "" && o.Load.MaxItems <= 0 {
		return o, usagef("--max-items must be positive")
	}
	return o, nil
}

// key names the profile (and question) in logs.
func (o profileOptions) key() string { return o.Path + "#" + o.Load.QuestionID }

// load reads the profile; what loading left out is reported on stderr.
func (o profileOptions) load(ctx context.Context) (*profile.Profile, lamp.Task, error) {
	// The profile package's errors name the profile and its file already
	// (profile.LoadError).
	prof, err := profile.LoadContext(ctx, o.Path, o.Load)
	if err != nil {
		return nil, o.Load.Task, o.fieldsHint(err)
	}
	reportProfile(prof, o.Load.MaxItems)
	return prof, o.Load.Task, nil
}

// fieldsHint names the flag that chose the text fields when no item is
// usable.
func (o profileOptions) fieldsHint(err error) error {
	switch {
	case !errors.Is(err, profile.ErrNoUsableItems):
		return err
	case o.fields != "":
		return fmt.Errorf("--fields %s: %w", o.fields, err)
	case o.task != "":
		return fmt.Errorf("--task %s: %w", o.task, err)
	}
	return err
}

// encoderOptions are --encoder, --pooling and --encoder-max-tokens.
type encoderOptions struct {
	Path    string // "": the LLM encodes
	Options persona.EncoderOptions
}

func encoderOptionsFrom(c *cli.Context) (encoderOptions, error) {
	o := encoderOptions{Path: c.String("encoder"), Options: persona.EncoderOptions{MaxTokens: c.Int("encoder-max-tokens")}}
	// A separate encoder goes where the LLM goes: the same devices and -ngl.
	if c.String("encoder") != "" {
		dev, err := deviceOptions(c)
		if err != nil {
			return o, err
		}
		o.Options.Load = llama.ModelOptions{GPULayers: dev.GPULayers, Devices: dev.Devices, SplitMode: dev.SplitMode, MainGPU: dev.MainGPU}
	}
	if s := c.String("pooling"); s != "" {
		pool, err := llama.ParsePooling(s)
		if err != nil {
			return o, usageError{err}
		}
		o.Options.Pooling = pool
	}
	return o, nil
}

// open opens the encoder, or wraps the LLM itself.
func (o encoderOptions) open(ctx context.Context, llm *llama.Model, threads int) (*persona.Encoder, error) {
	eo := o.Options
	eo.Threads = threads
	if o.Path != "" {
		return persona.OpenEncoder(ctx, o.Path, eo)
	}
	if llm == nil {
		return nil, usagef("give the encoder with --encoder FILE, or the LLM with -m FILE to encode with the LLM itself")
	}
	return persona.NewEncoder(llm, eo)
}

// cacheOptions are --cache-dir and --no-cache.
type cacheOptions struct {
	Dir string // "": persona.DefaultCacheDir
	Off bool
}

func cacheOptionsFrom(c *cli.Context) cacheOptions {
	return cacheOptions{Dir: c.String("cache-dir"), Off: c.Bool("no-cache")}
}

// cache is the embedding cache the options ask for (nil: none).
func (o cacheOptions) cache() *persona.Cache {
	if o.Off {
		return nil
	}
	dir := o.Dir
	if dir == "" {
		dir = persona.DefaultCacheDir()
	}
	return &persona.Cache{Dir: dir}
}

// personaOptions are what personalises a run: the profile, the plug and
// its runtime (encoder, kernels, cache), the retrieval depth and the
// method.
type personaOptions struct {
	Profile      profileOptions
	Encoder      encoderOptions
	Cache        cacheOptions
	Plug         string
	RetrieveK    int
	Threads      int
	PluginDevice string // --plugin-device: "auto" follows the model's device
	// Method is --method as given ("auto" when not), resolved by method.
	Method string
	// QuestionPrompt: the LaMP question's input is the prompt (a
	// --question-id and no prompt of its own).
	QuestionPrompt bool
}

func personaOptionsFrom(c *cli.Context) (personaOptions, error) {
	o := personaOptions{Plug: c.String("plug"), RetrieveK: c.Int("retrieve-k"), Threads: c.Int("threads"), Cache: cacheOptionsFrom(c), Method: "auto"}
	var err error
	if o.Profile, err = profileOptionsFrom(c); err != nil {
		return o, err
	}
	if o.Encoder, err = encoderOptionsFrom(c); err != nil {
		return o, err
	}
	if c.IsSet("method") {
		o.Method = c.String("method")
	}
	o.PluginDevice = c.String("plugin-device")
	o.QuestionPrompt = o.Profile.Load.QuestionID != "" && !promptGiven(c)
	return o, nil
}

// method is the method the options ask for (persona.ChooseMethod, its
// errors named by the flags).
func (o personaOptions) method() (persona.Method, error) {
	m, err := persona.ChooseMethod(o.Plug != "", o.Profile.Path != "", o.Method)
	switch {
	case err == nil:
		return m, nil
	case errors.Is(err, persona.ErrPlugNeedsProfile):
		return "", usagef("--plug needs --profile: a plug-in turns a user's history into persona rows")
	case errors.Is(err, persona.ErrMethodNeedsPlug):
		return "", usagef("--method %s needs --plug", o.Method)
	case errors.Is(err, persona.ErrMethodNeedsProfile):
		return "", usagef("--method %s needs --profile", o.Method)
	case errors.Is(err, persona.ErrMethodUsesNoPlug):
		return "", usagef("--method %s uses no plug; leave out --plug", o.Method)
	}
	return "", usageError{fmt.Errorf("--method: %w", err)}
}

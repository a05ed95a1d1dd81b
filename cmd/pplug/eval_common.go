package main

import (
	"context"
	"errors"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/eval"
	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
)

// evalCommon are the options eval and eval show share, read once: the
// questions, the golds, the task, the model, the context and the plug.
type evalCommon struct {
	questions  string
	golds      *lamp.Outputs
	task       lamp.Task
	model      modelConfig
	context    llama.ContextOptions
	threadsSet bool // -t given: no tiny-model default
	persona    personaOptions
	k, maxNew  int
}

// evalCommonFrom reads the shared flags and checks them before anything
// loads.
func evalCommonFrom(c *cli.Context) (*evalCommon, error) {
	e := &evalCommon{questions: c.String("questions"), k: c.Int("k"), maxNew: c.Int("max-new-tokens"), threadsSet: c.IsSet("threads")}
	if e.questions == "" {
		return nil, usagef("no questions given: pass --questions FILE (a LaMP {split}_questions.json)")
	}
	var err error
	if e.golds, err = readGolds(c); err != nil {
		return nil, err
	}
	if e.task, err = evalTask(c, e.golds); err != nil {
		return nil, err
	}
	if e.context, err = contextOptions(c); err != nil {
		return nil, err
	}
	if e.model, err = modelConfigFrom(c); err != nil {
		return nil, err
	}
	if e.persona, err = personaOptionsFrom(c); err != nil {
		return nil, err
	}
	return e, nil
}

// predictor loads the model, the plug's runtime (with --plug) and a
// context: the predictor both commands run. close frees them.
func (e *evalCommon) predictor(ctx context.Context, stderr io.Writer) (p *eval.Predictor, _ func() error, err error) {
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	m, err := e.model.load(ctx, stderr)
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, func() error { m.Close(); return nil })
	p = &eval.Predictor{LLM: m, Task: e.task, K: e.k, MaxNew: e.maxNew}
	if e.persona.Plug != "" {
		var pz *persona.Personalizer
		var closeRT func() error
		if pz, closeRT, err = openRuntime(ctx, e.persona, m); err != nil {
			return nil, nil, err
		}
		closers = append(closers, closeRT)
		p.Personalizer = pz
	}
	copts := e.context
	threadDefault(e.threadsSet, m, &copts)
	if p.Ctx, err = m.NewContext(copts); err != nil {
		return nil, nil, err
	}
	closers = append(closers, p.Ctx.Close, p.Close)
	return p, closeAll, nil
}

package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/pplug/pplug/llama"
)

// multiline gathers one chat message from input lines, as ollama and
// llama-cli do: a line that ends with a backslash continues on the next
// line, and a line that starts with """ opens a block that runs to the
// next line ending with """ (both on one line is a one-line block).
type multiline struct {
	parts []string
	block bool // inside """ ... """
}

// Feed adds one input line. It returns the message and true when the line
// completes one; otherwise the caller reads another line.
func (m *multiline) Feed(line string) (string, bool) {
	if m.block {
		if rest, ok := strings.CutSuffix(strings.TrimRight(line, " \t\r"), `"""`); ok {
			if rest != "" {
				m.parts = append(m.parts, rest)
			}
			return m.take(), true
		}
		m.parts = append(m.parts, line)
		return "", false
	}
	if rest, ok := strings.CutPrefix(strings.TrimLeft(line, " \t"), `"""`); ok && len(m.parts) == 0 {
		if body, closed := strings.CutSuffix(strings.TrimRight(rest, " \t\r"), `"""`); closed {
			return body, true
		}
		m.block = true
		if rest != "" {
			m.parts = append(m.parts, rest)
		}
		return "", false
	}
	if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t\r"), `\`); ok {
		m.parts = append(m.parts, body)
		return "", false
	}
	m.parts = append(m.parts, line)
	return m.take(), true
}

// Pending reports whether a message is half read (the prompt shows "...").
func (m *multiline) Pending() bool { return m.block || len(m.parts) > 0 }

// Flush returns what was gathered when the input ends inside a message.
func (m *multiline) Flush() (string, bool) {
	if !m.Pending() {
		return "", false
	}
	return m.take(), true
}

func (m *multiline) take() string {
	s := strings.Join(m.parts, "\n")
	m.parts, m.block = m.parts[:0], false
	return s
}

// chatSettings are what /set changes during a chat.
type chatSettings struct {
	Sampler  llama.SamplerOptions
	NPredict int
	System   string
}

// setNames maps /set names (llama.cpp's flag names, ollama's parameter
// names) to one setting.
var setNames = map[string]string{
	"temp": "temp", "temperature": "temp",
	"top-k": "top-k", "top_k": "top-k",
	"top-p": "top-p", "top_p": "top-p",
	"min-p": "min-p", "min_p": "min-p",
	"repeat-penalty": "repeat-penalty", "repeat_penalty": "repeat-penalty",
	"repeat-last-n": "repeat-last-n", "repeat_last_n": "repeat-last-n",
	"frequency-penalty": "frequency-penalty", "frequency_penalty": "frequency-penalty",
	"presence-penalty": "presence-penalty", "presence_penalty": "presence-penalty",
	"seed":      "seed",
	"n-predict": "n-predict", "num_predict": "n-predict", "n": "n-predict",
	"system": "system",
}

const setUsage = "usage: /set NAME VALUE (temp, top-k, top-p, min-p, repeat-penalty, repeat-last-n, frequency-penalty, presence-penalty, seed, n-predict, system); /set alone shows them"

// apply changes one setting from /set's arguments ("temp 0.7", "parameter
// temperature 0.7", "system You are terse."). The settings are unchanged
// when it returns an error.
func (s *chatSettings) apply(args []string) (string, error) {
	if len(args) > 0 && args[0] == "parameter" {
		args = args[1:]
	}
	if len(args) < 2 {
		return "", fmt.Errorf("%s", setUsage)
	}
	name, ok := setNames[strings.ToLower(args[0])]
	if !ok {
		return "", fmt.Errorf("unknown setting %q; %s", args[0], setUsage)
	}
	if name == "system" {
		s.System = strings.Join(args[1:], " ")
		return "system prompt set (the conversation starts over)", nil
	}
	if len(args) != 2 {
		return "", fmt.Errorf("/set %s takes one value", name)
	}
	v := args[1]
	o := s.Sampler
	n := s.NPredict
	num := func() (float32, error) {
		f, err := strconv.ParseFloat(v, 32)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("/set %s: %q is not a number", name, v)
		}
		return float32(f), nil
	}
	integer := func() (int, error) {
		i, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("/set %s: %q is not an integer", name, v)
		}
		return i, nil
	}
	var err error
	switch name {
	case "temp":
		o.Temp, err = num()
	case "top-k":
		o.TopK, err = integer()
	case "top-p":
		o.TopP, err = num()
	case "min-p":
		o.MinP, err = num()
	case "repeat-penalty":
		o.RepeatPenalty, err = num()
	case "repeat-last-n":
		o.RepeatLastN, err = integer()
	case "frequency-penalty":
		o.FrequencyPenalty, err = num()
	case "presence-penalty":
		o.PresencePenalty, err = num()
	case "seed":
		var i int
		if i, err = integer(); err == nil {
			switch {
			case i == -1:
				o.Seed = llama.SeedRandom
			case i < 0 || int64(i) >= math.MaxUint32:
				err = fmt.Errorf("/set seed: %d is outside -1..%d", i, uint32(math.MaxUint32-1))
			default:
				o.Seed = uint32(i)
			}
		}
	case "n-predict":
		if n, err = integer(); err == nil && n < -1 {
			err = fmt.Errorf("/set n-predict: %d must be -1 (no limit) or more", n)
		}
	}
	if err != nil {
		return "", err
	}
	if name == "top-k" && o.TopK < 0 {
		return "", fmt.Errorf("/set top-k: %d must not be negative (0 turns it off)", o.TopK)
	}
	if err := o.Validate(); err != nil {
		return "", fmt.Errorf("/set %s: %w", name, err)
	}
	s.Sampler, s.NPredict = o, n
	return fmt.Sprintf("%s = %s", name, v), nil
}

// describe lists the settings for /set and /show.
func (s *chatSettings) describe() string {
	o := s.Sampler
	seed := "random"
	if o.Seed != llama.SeedRandom {
		seed = strconv.FormatUint(uint64(o.Seed), 10)
	}
	g := "none"
	if o.Grammar != "" {
		g = fmt.Sprintf("%d bytes", len(o.Grammar))
	}
	return fmt.Sprintf("temp %s  top-k %d  top-p %s  min-p %s  repeat-penalty %s  repeat-last-n %d  frequency-penalty %s  presence-penalty %s  seed %s  n-predict %d  grammar %s",
		fmtFloat(o.Temp), o.TopK, fmtFloat(o.TopP), fmtFloat(o.MinP), fmtFloat(o.RepeatPenalty), o.RepeatLastN,
		fmtFloat(o.FrequencyPenalty), fmtFloat(o.PresencePenalty), seed, s.NPredict, g)
}

func fmtFloat(f float32) string { return strconv.FormatFloat(float64(f), 'g', -1, 32) }

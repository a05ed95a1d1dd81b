package server

// The responses of the two completion routes, streamed and whole.

// chatAnswer builds chat.completion and chat.completion.chunk objects.
func (s *Server) chatAnswer(p *prepared, lp logprobsRequest) answer {
	id := newID("chatcmpl-")
	head := func(object string, u *usage) chatResponse {
		return chatResponse{ID: id, Object: object, Created: p.created, Model: s.cfg.ModelName, Choices: []chatChoice{}, Usage: u}
	}
	return answer{
		chunk: func(text *string, probs []tokenProb, finish *string, u *usage) any {
			resp := head("chat.completion.chunk", u)
			switch {
			case u != nil: // the usage event has no choices
			case finish != nil:
				resp.Choices = []chatChoice{{Delta: &outDelta{}, FinishReason: finish}}
			case text == nil:
				empty := ""
				resp.Choices = []chatChoice{{Delta: &outDelta{Role: "assistant", Content: &empty}}}
			default:
				resp.Choices = []chatChoice{{Delta: &outDelta{Content: text}, Logprobs: chatLogprobsOf(lp, probs)}}
			}
			return resp
		},
		whole: func(text string, probs []tokenProb, finish string, u usage) any {
			resp := head("chat.completion", &u)
			resp.Choices = []chatChoice{{Message: &outMessage{Role: "assistant", Content: text}, FinishReason: &finish, Logprobs: chatLogprobsOf(lp, probs)}}
			return resp
		},
	}
}

// completionAnswer builds text_completion objects.
func (s *Server) completionAnswer(p *prepared, lp logprobsRequest) answer {
	id := newID("cmpl-")
	head := func(u *usage) completionResponse {
		return completionResponse{ID: id, Object: "text_completion", Created: p.created, Model: s.cfg.ModelName, Choices: []completionChoice{}, Usage: u}
	}
	return answer{
		chunk: func(text *string, probs []tokenProb, finish *string, u *usage) any {
			resp := head(u)
			if u != nil {
				return resp
			}
			c := completionChoice{FinishReason: finish}
			if text != nil {
				c.Text, c.Logprobs = *text, completionLogprobsOf(lp, probs)
			}
			resp.Choices = []completionChoice{c}
			return resp
		},
		whole: func(text string, probs []tokenProb, finish string, u usage) any {
			resp := head(&u)
			resp.Choices = []completionChoice{{Text: text, FinishReason: &finish, Logprobs: completionLogprobsOf(lp, probs)}}
			return resp
		},
	}
}

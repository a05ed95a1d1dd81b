//go:build heavy

package main

import (
	"testing"
	"time"
)

// TestChatLoadHugeTranscript: /load of 100,000 messages and an answer
// (before the window search: more than ten minutes).
func TestChatLoadHugeTranscript(t *testing.T) {
	loadAndAnswer(t, 100000, 60*time.Second)
}

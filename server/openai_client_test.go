package server

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// The official OpenAI Go client against the server: what users will run.
func TestOpenAIGoClient(t *testing.T) {
	ts := startServer(t, 2, "admin-key")
	ctx := context.Background()
	client := openai.NewClient(option.WithBaseURL(ts.url+"/v1/"), option.WithAPIKey("admin-key"), option.WithMaxRetries(0))

	want := ts.reference(t, "lily", "Once upon a time", 20)
	c, err := client.Completions.New(ctx, openai.CompletionNewParams{
		Model:       "pplug",
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens:   openai.Int(20),
		Temperature: openai.Float(0),
		User:        openai.String("lily"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Choices) != 1 || c.Choices[0].Text != want || c.Usage.CompletionTokens != 20 {
		t.Fatalf("completion %+v, want %q", c.Choices, want)
	}

	params := openai.ChatCompletionNewParams{
		Model:       "pplug",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("You tell stories."), openai.UserMessage("Tell me about a dog.")},
		MaxTokens:   openai.Int(16),
		Temperature: openai.Float(0),
		User:        openai.String("tom"),
	}
	whole, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(whole.Choices) != 1 || whole.Choices[0].Message.Content == "" || whole.Choices[0].FinishReason != "length" {
		t.Fatalf("chat: %+v", whole.Choices)
	}
	stream := client.Chat.Completions.NewStreaming(ctx, params)
	acc := openai.ChatCompletionAccumulator{}
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got := acc.Choices[0].Message.Content; got != whole.Choices[0].Message.Content {
		t.Fatalf("streamed chat %q, whole %q", got, whole.Choices[0].Message.Content)
	}

	models, err := client.Models.List(ctx)
	if err != nil || len(models.Data) != 1 || models.Data[0].ID != "pplug" {
		t.Fatalf("models: %+v %v", models, err)
	}
	emb, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "pplug", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("a red ball")},
	})
	if err != nil || len(emb.Data) != 1 || len(emb.Data[0].Embedding) != ts.pz.Encoder.Dim() {
		t.Fatalf("embeddings: %+v %v", emb, err)
	}

	// Errors come back as the client's *openai.Error with status and code.
	_, err = client.Completions.New(ctx, openai.CompletionNewParams{
		Model: "gpt-4o", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")},
	})
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusNotFound || oe.Code != "model_not_found" {
		t.Fatalf("unknown model: %v", err)
	}
}

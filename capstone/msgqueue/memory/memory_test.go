package memory_test

import (
	"context"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/memory"
	"example.com/myevents/capstone/msgqueue/msgqueuetest"
)

// TestConformance runs the transport suite against the in-memory bus.
func TestConformance(t *testing.T) {
	msgqueuetest.Run(t, msgqueuetest.Transport{
		Name: "memory",
		NewEnv: func(t *testing.T) *msgqueuetest.Env {
			bus := memory.New(memory.WithRetryBackoff(5 * time.Millisecond))
			const queue = "service"
			return &msgqueuetest.Env{
				NewListener: func(_ context.Context, names ...string) (msgqueue.Listener, error) {
					return bus.Listener(queue, names...)
				},
				NewEmitter: func(context.Context) (msgqueue.Emitter, error) {
					return bus.Emitter(), nil
				},
				DeadLetters: func(context.Context) ([]msgqueuetest.DeadLetter, error) {
					var out []msgqueuetest.DeadLetter
					for _, dl := range bus.DeadLetters(queue) {
						out = append(out, msgqueuetest.DeadLetter{ID: dl.ID, Name: dl.Name, Body: dl.Body})
					}
					return out, nil
				},
				Poison: msgqueuetest.AllPoison,
				InjectPoison: func(_ context.Context, kind msgqueuetest.PoisonKind, id string) error {
					name, body := msgqueuetest.PoisonMessage(kind)
					return bus.Inject(queue, memory.Message{ID: id, Name: name, Body: body})
				},
			}
		},
	})
}

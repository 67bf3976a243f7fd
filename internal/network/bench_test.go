package network

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkThroughput measures one channel, one producer and one consumer
// over loopback. The consumer behaves like the runtime: deliver enqueues
// into a queue sized by the credits, and a task goroutine releases each
// buffer after looking at it.
//
//	go test -run '^$' -bench Throughput -benchtime 3s ./internal/network/
func BenchmarkThroughput(b *testing.B) {
	for _, bc := range []struct {
		size, credits int
	}{
		{32 << 10, 8},
		{64, 8},
		{64, 64},
	} {
		b.Run(fmt.Sprintf("payload=%s/credits=%d", byteSize(bc.size), bc.credits), func(b *testing.B) {
			benchmarkThroughput(b, bc.size, bc.credits)
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func benchmarkThroughput(b *testing.B, size, credits int) {
	s, err := Listen("127.0.0.1:0", Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c := NewClient(Options{})
	defer c.Close()
	ctx := context.Background()
	id := testID(0, 1, 0, 0)

	type buffer struct {
		payload []byte
		release func()
	}
	queue := make(chan buffer, credits)
	if _, err := s.RegisterInput(id, credits, func(kind uint8, payload []byte, release func()) {
		queue <- buffer{payload, release}
	}, func(err error) { b.Error(err) }); err != nil {
		b.Fatal(err)
	}
	out, err := c.OpenOutput(ctx, s.Addr(), id)
	if err != nil {
		b.Fatal(err)
	}

	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	done := make(chan int64)
	go func() { // the consuming task
		var sum int64
		for range b.N {
			buf := <-queue
			sum += int64(buf.payload[len(buf.payload)-1])
			buf.release()
		}
		done <- sum
	}()

	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := out.Write(ctx, 1, payload); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	elapsed := time.Since(start)
	b.StopTimer()
	_ = out.Close() // a closed channel is not an error for the consumer
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "buffers/s")
}

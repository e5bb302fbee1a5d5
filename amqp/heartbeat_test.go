package amqp_test

import (
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/transport"
)

// TestHeartbeat puts a proxy between the transport and the broker and
// makes it go silent, as a broker behind a dead network link does (no FIN,
// no RST): heartbeats must notice, the transport must report the loss,
// reconnect once the link is back and work again.
func TestHeartbeat(t *testing.T) {
	broker, err := url.Parse(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	p := newFreezingProxy(t, broker.Host)
	u := *broker
	u.Host = p.addr
	ctx := testCtx(t, 60*time.Second)
	tr, err := amqp.Dial(ctx, u.String(), amqp.Options{
		Heartbeat: time.Second, DialTimeout: 2 * time.Second,
		ReconnectDelay: 50 * time.Millisecond, MaxReconnectDelay: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	events := make(chan transport.Event, 100)
	stop := tr.Watch(func(e transport.Event) { events <- e })
	defer stop()
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q})

	p.freeze(true)
	for lost := 0; lost < 2; {
		select {
		case e := <-events:
			if e.Kind == transport.Disconnected {
				lost++
				t.Logf("lost: %v", e.Err)
			}
		case <-ctx.Done():
			t.Fatal("a silent broker went unnoticed")
		}
	}
	if err := tr.Health(ctx); err == nil {
		t.Fatal("Health is fine while the broker is unreachable")
	}
	p.freeze(false)
	for up := 0; up < 2; {
		select {
		case e := <-events:
			if e.Kind == transport.Connected {
				up++
			}
		case <-ctx.Done():
			t.Fatal("no reconnection")
		}
	}
	got := collect(t, tr, q, transport.ConsumeOptions{})
	if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q, Mandatory: true, Message: transport.Message{ID: "after"}}); err != nil {
		t.Fatal(err)
	}
	if d := next(t, got, 10*time.Second); d.ID != "after" {
		t.Fatalf("delivery %q", d.ID)
	}
}

// freezingProxy forwards TCP connections to a target; frozen, it accepts
// connections and keeps every connection open but moves no byte.
type freezingProxy struct {
	addr   string
	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
	closed bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newFreezingProxy(t *testing.T, target string) *freezingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{addr: ln.Addr().String()}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(up, c)
			go p.pipe(c, up)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		p.closed = true
		p.cond.Broadcast()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *freezingProxy) freeze(on bool) {
	p.mu.Lock()
	p.frozen = on
	p.cond.Broadcast()
	p.mu.Unlock()
}

// reset aborts every connection open through the proxy with a TCP RST on
// both sides, as a middlebox or a crashed peer does: the client's next
// write fails with "connection reset by peer".
func (p *freezingProxy) reset() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

// pipe copies src to dst, holding each chunk while the proxy is frozen.
func (p *freezingProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32*1024)
	for {
		p.mu.Lock()
		for p.frozen && !p.closed {
			p.cond.Wait()
		}
		p.mu.Unlock()
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.frozen && !p.closed {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestHeartbeatFalseAlarms measures how often a heartbeat timeout fires on
// a healthy broker: 20 idle transports (40 connections) for
// BUSLINE_MEASURE_SECONDS (default 120) with the heartbeat in
// BUSLINE_MEASURE_HEARTBEAT (default 1s), counting lost connections. It
// runs only with BUSLINE_MEASURE=1; run it on a loaded host to see the
// margin the default heartbeat leaves.
func TestHeartbeatFalseAlarms(t *testing.T) {
	if os.Getenv("BUSLINE_MEASURE") != "1" {
		t.Skip("a measurement: set BUSLINE_MEASURE=1")
	}
	brokertest.URL(t)
	hb, secs := time.Second, 120
	if v := os.Getenv("BUSLINE_MEASURE_HEARTBEAT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		hb = d
	}
	if v := os.Getenv("BUSLINE_MEASURE_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		secs = n
	}
	var lost atomic.Int32
	for range 20 {
		tr := dial(t, amqp.Options{Heartbeat: hb})
		stop := tr.Watch(func(e transport.Event) {
			if e.Kind == transport.Disconnected {
				lost.Add(1)
				t.Logf("%s %v", e.Time.Format("15:04:05.000"), e.Err)
			}
		})
		t.Cleanup(stop)
	}
	time.Sleep(time.Duration(secs) * time.Second)
	t.Logf("heartbeat %v: %d connections lost in %d s over 40 idle connections", hb, lost.Load(), secs)
}

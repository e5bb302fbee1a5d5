package amqp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/transport"
)

// TestTLS connects with amqps:// through a TLS-terminating proxy in front
// of the test broker (whose node has no TLS listener), with a certificate
// made for the test: the transport must verify it against Options.TLS and
// refuse it without.
func TestTLS(t *testing.T) {
	broker, err := url.Parse(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	cert, pool := selfSigned(t)
	proxy := tlsProxy(t, broker.Host, cert)
	u := *broker
	u.Scheme = "amqps"
	u.Host = proxy

	ctx := testCtx(t, 30*time.Second)
	tr, err := amqp.Dial(ctx, u.String(), amqp.Options{TLS: &tls.Config{RootCAs: pool, ServerName: "localhost"}})
	if err != nil {
		t.Fatalf("Dial over TLS: %v", err)
	}
	defer tr.Close()
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q})
	got := collect(t, tr, q, transport.ConsumeOptions{})
	if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q, Mandatory: true, Message: transport.Message{ID: "tls"}}); err != nil {
		t.Fatal(err)
	}
	if d := next(t, got, 10*time.Second); d.ID != "tls" {
		t.Fatalf("delivery %q", d.ID)
	}

	// Without the test's root, the certificate is refused, and the error
	// says so without the password.
	_, err = amqp.Dial(ctx, u.String(), amqp.Options{})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("Dial with an unknown certificate authority = %v", err)
	}
	if p, _ := broker.User.Password(); strings.Contains(err.Error(), ":"+p+"@") {
		t.Fatalf("error shows the password: %v", err)
	}
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "busline test"},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// tlsProxy accepts TLS on a local port and forwards the plain bytes to
// target, until the test ends. It returns its address.
func tlsProxy(t *testing.T, target string, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
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
			track(c)
			track(up)
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(c, up); _ = c.Close() }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "localhost:" + port
}

// TestBlocked raises a memory alarm on the broker: the transport reports
// Blocked, Dispatch waits bounded by its context, and publishing resumes
// when the alarm clears.
func TestBlocked(t *testing.T) {
	brokertest.URL(t)
	brokertest.Control(t, "ctl", "ping")
	tr := dial(t, amqp.Options{})
	events := make(chan transport.Event, 100)
	stop := tr.Watch(func(e transport.Event) {
		if e.Kind == transport.Blocked || e.Kind == transport.Unblocked {
			events <- e
		}
	})
	defer stop()
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q})
	// Generous: each rabbitmqctl call starts a VM, which took 15 s on a
	// 2-core machine running several test suites (the Unblocked event came
	// after a 30 s context had ended).
	ctx := testCtx(t, 90*time.Second)
	if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q}); err != nil {
		t.Fatal(err)
	}

	brokertest.Control(t, "ctl", "set_vm_memory_high_watermark", "0.0000001")
	restored := false
	restore := func() {
		if !restored {
			restored = true
			brokertest.Control(t, "ctl", "set_vm_memory_high_watermark", "0.4")
		}
	}
	defer restore()
	// RabbitMQ blocks a connection, and says so, when it publishes during
	// the alarm (which its memory monitor raises within a few seconds): a
	// message then waits, bounded by its context.
	var err error
	for range 40 {
		short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err = tr.Dispatch(short, transport.Outgoing{RoutingKey: q})
		cancel()
		if err != nil {
			break
		}
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dispatch during the alarm = %v, want DeadlineExceeded", err)
	}
	select {
	case e := <-events:
		if e.Kind != transport.Blocked || e.Err == nil {
			t.Fatalf("event %v %v, want Blocked with a reason", e.Kind, e.Err)
		}
		t.Log(e.Err)
	case <-ctx.Done():
		t.Fatal("no Blocked event")
	}
	// Now Dispatch knows, and waits before writing anything.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = tr.Dispatch(short, transport.Outgoing{RoutingKey: q})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "blocks publishing") {
		t.Fatalf("Dispatch while blocked = %v, want DeadlineExceeded, saying why", err)
	}
	done := make(chan error, 1)
	go func() { done <- tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q}) }()
	restore()
	select {
	case e := <-events:
		if e.Kind != transport.Unblocked {
			t.Fatalf("event %v, want Unblocked", e.Kind)
		}
	case <-ctx.Done():
		t.Fatal("no Unblocked event")
	}
	if err := <-done; err != nil {
		t.Fatalf("Dispatch after the alarm cleared = %v", err)
	}
}

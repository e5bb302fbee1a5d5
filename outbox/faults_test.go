package outbox_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"modernc.org/sqlite"
)

// cutProxy is a TCP proxy between the tests' RabbitMQ clients and the
// broker that can cut every connection through it at once: the network
// failing under the clients, with the broker left running (other tests
// share it, so closing its connections with rabbitmqctl is not an option).
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]bool
	cuts   int
	wg     sync.WaitGroup
}

// newCutProxy proxies to the host and port of the AMQP URL target, and
// returns the proxy and the URL to dial; the proxy closes when the test
// ends.
func newCutProxy(t testing.TB, target string) (*cutProxy, string) {
	u, err := url.Parse(target)
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	p := &cutProxy{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve copies both ways between c and a new connection to the broker
// until either side closes or the proxy cuts them.
func (p *cutProxy) serve(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, s) {
		return
	}
	var wg sync.WaitGroup
	for _, d := range [][2]net.Conn{{c, s}, {s, c}} {
		wg.Go(func() {
			io.Copy(d[0], d[1])
			d[0].Close()
			d[1].Close()
		})
	}
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

func (p *cutProxy) track(c, s net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil { // closed
		c.Close()
		s.Close()
		return false
	}
	p.conns[c], p.conns[s] = true, true
	return true
}

// Cut closes every connection through the proxy: each client sees its
// connection reset, and the broker sees its peer gone (it requeues the
// unacked deliveries). New connections are accepted as before.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cuts++
	for c := range p.conns {
		c.Close()
	}
}

// Cuts returns how many times Cut was called.
func (p *cutProxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

func (p *cutProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// killableDB opens SQLite through a connector whose connections can all be
// killed at once, as a lost connection to a database server would be:
// each killed connection closes its SQLite connection (rolling back its
// transaction) the next time it is used, and that use fails with
// driver.ErrBadConn, which database/sql answers by discarding the
// connection (and by opening another one, outside a transaction).
type killableDB struct {
	dsn   string
	mu    sync.Mutex
	conns map[*killableConn]bool
	kills atomic.Int64
}

func openKillableSQLite(dsn string) (*sql.DB, *killableDB) {
	k := &killableDB{dsn: dsn, conns: map[*killableConn]bool{}}
	return sql.OpenDB(k), k
}

// KillAll kills every open connection.
func (k *killableDB) KillAll() {
	k.kills.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	for c := range k.conns {
		c.dead.Store(true)
	}
}

func (k *killableDB) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := (&sqlite.Driver{}).Open(k.dsn)
	if err != nil {
		return nil, err
	}
	kc := &killableConn{k: k, c: c}
	k.mu.Lock()
	k.conns[kc] = true
	k.mu.Unlock()
	return kc, nil
}

func (k *killableDB) Driver() driver.Driver { return &sqlite.Driver{} }

// killableConn is a driver.Conn that database/sql uses as it would use
// modernc.org/sqlite's own.
type killableConn struct {
	k      *killableDB
	c      driver.Conn
	dead   atomic.Bool
	closed bool // c is closed; database/sql serializes the calls on a conn
}

// alive closes a killed connection and says so with ErrBadConn.
func (c *killableConn) alive() error {
	if !c.dead.Load() {
		return nil
	}
	c.closeInner()
	return driver.ErrBadConn
}

func (c *killableConn) closeInner() {
	if !c.closed {
		c.closed = true
		c.c.Close()
		c.k.mu.Lock()
		delete(c.k.conns, c)
		c.k.mu.Unlock()
	}
}

func (c *killableConn) Close() error {
	c.closeInner()
	return nil
}

func (c *killableConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *killableConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	return c.c.(driver.ConnPrepareContext).PrepareContext(ctx, query)
}

func (c *killableConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *killableConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	tx, err := c.c.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &killableTx{c: c, tx: tx}, nil
}

func (c *killableConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	return c.c.(driver.ExecerContext).ExecContext(ctx, query, args)
}

func (c *killableConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	return c.c.(driver.QueryerContext).QueryContext(ctx, query, args)
}

func (c *killableConn) ResetSession(ctx context.Context) error {
	if err := c.alive(); err != nil {
		return err
	}
	if r, ok := c.c.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *killableConn) IsValid() bool { return !c.dead.Load() }

type killableTx struct {
	c  *killableConn
	tx driver.Tx
}

func (t *killableTx) Commit() error {
	if err := t.c.alive(); err != nil {
		return err
	}
	return t.tx.Commit()
}

func (t *killableTx) Rollback() error {
	if t.c.closed {
		return driver.ErrBadConn // closing rolled it back
	}
	err := t.tx.Rollback()
	if t.c.dead.Load() {
		return errors.Join(err, t.c.alive())
	}
	return err
}

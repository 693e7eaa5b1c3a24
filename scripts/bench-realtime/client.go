// The load client of `npm run bench:realtime` (a benchmark, not a test). One process speaks the
// framing of every system measured (raw `ws` JSON, Socket.IO's engine.io packets, Centrifugo's JSON
// protocol, Mega's envelope) over a minimal RFC 6455 client, so every system meets the same client.
//
// It opens the subscribers, warms the path up, runs the phases it is given and prints one JSON
// result on stdout (progress on stderr). Server and broker CPU is read from /proc/<pid>/stat at the
// phase boundaries, so the orchestrator needs no round trip to the servers while they work.
//
// bench-realtime.ts copies this file into a throwaway module under ~/.cache/mega/bench and builds
// it there; it has no dependencies beyond the standard library.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type Target struct {
	URL   string `json:"url"`
	Count int    `json:"count"`
}

type Phase struct {
	Kind    string  `json:"kind"` // steady | saturated (window) | paced | burst
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"`   // paced: publishes per second
	Window  int     `json:"window"` // steady, saturated: publishes in flight
	Size    int     `json:"size"`   // burst: publishes per write
}

type Config struct {
	System  string   `json:"system"` // ws | sio | cf | mega
	Subs    []Target `json:"subs"`
	Pub     string   `json:"pub"`
	Channel string   `json:"channel"`
	Servers []int    `json:"servers"`
	Brokers []int    `json:"brokers"`
	Phases  []Phase  `json:"phases"`
	Memory  bool     `json:"memory"` // only connect, subscribe and read RSS
	Text    string   `json:"text"`
}

type PhaseResult struct {
	Kind      string    `json:"kind"`
	Publishes int64     `json:"publishes"`
	Expected  int64     `json:"expected"`
	Delivered int64     `json:"delivered"`
	Seconds   float64   `json:"seconds"`
	ServerCPU []float64 `json:"serverCpu"`
	BrokerCPU []float64 `json:"brokerCpu"`
	ClientCPU float64   `json:"clientCpu"`
	P50       float64   `json:"p50"`
	P99       float64   `json:"p99"`
	TimedOut  bool      `json:"timedOut"`
}

type Result struct {
	Phases    []PhaseResult `json:"phases,omitempty"`
	RssBefore []int64       `json:"rssBefore,omitempty"`
	RssAfter  []int64       `json:"rssAfter,omitempty"`
	Conns     int           `json:"conns"`
	ConnectS  float64       `json:"connectSeconds"`
}

var (
	cfg   Config
	start = time.Now()
	nSubs int32
	// Deliveries per publish sequence number; a publish is complete when its slot reaches nSubs.
	counts      = make([]int32, 1<<20)
	measureFrom atomic.Int64 // first sequence number of the current phase
	completed   atomic.Int64 // publishes of the current phase delivered to every subscriber
	delivered   atomic.Int64 // deliveries of the current phase
	completion  = make(chan struct{}, 1<<16)
	hist        [histBuckets]atomic.Int64
)

// Latency histogram: 1 µs buckets up to 10 ms, then 100 µs buckets up to ~1 s.
const histBuckets = 20000

func bucket(us int64) int {
	if us < 0 {
		us = 0
	}
	if us < 10000 {
		return int(us)
	}
	b := 10000 + int((us-10000)/100)
	if b >= histBuckets {
		b = histBuckets - 1
	}
	return b
}

func bucketUs(b int) float64 {
	if b < 10000 {
		return float64(b)
	}
	return float64(10000 + (b-10000)*100)
}

func percentile(p float64) float64 {
	var total int64
	for i := range hist {
		total += hist[i].Load()
	}
	if total == 0 {
		return -1
	}
	want := int64(float64(total) * p)
	var acc int64
	for i := range hist {
		acc += hist[i].Load()
		if acc > want {
			return bucketUs(i) / 1000
		}
	}
	return bucketUs(histBuckets-1) / 1000
}

func nowUs() int64 { return int64(time.Since(start) / time.Microsecond) }

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, "  [client] "+format+"\n", a...) }

// ----------------------------------------------------------------------- WebSocket client

type Conn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
	wmu sync.Mutex
}

func dial(raw string, readBuf int) (*Conn, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return nil, err
	}
	path := u.RequestURI()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		c.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(c, readBuf)
	status, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	if !strings.Contains(status, " 101 ") {
		rest, _ := r.Peek(r.Buffered())
		c.Close()
		return nil, fmt.Errorf("%s: upgrade refused: %s %s", raw, strings.TrimSpace(status), rest)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, err
		}
		if line == "\r\n" {
			break
		}
	}
	return &Conn{c: c, r: r}, nil
}

// read returns the next data message (text or binary) and answers pings; the slice is valid
// until the next call.
func (c *Conn) read() ([]byte, error) {
	c.buf = c.buf[:0]
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.r, h[:]); err != nil {
			return nil, err
		}
		fin := h[0]&0x80 != 0
		op := h[0] & 0x0f
		n := uint64(h[1] & 0x7f)
		if n == 126 {
			var e [2]byte
			if _, err := io.ReadFull(c.r, e[:]); err != nil {
				return nil, err
			}
			n = uint64(e[0])<<8 | uint64(e[1])
		} else if n == 127 {
			var e [8]byte
			if _, err := io.ReadFull(c.r, e[:]); err != nil {
				return nil, err
			}
			n = 0
			for _, b := range e {
				n = n<<8 | uint64(b)
			}
		}
		if h[1]&0x80 != 0 {
			return nil, errors.New("masked frame from server")
		}
		if op >= 8 { // control frame: never fragmented, may sit between fragments
			p := make([]byte, n)
			if _, err := io.ReadFull(c.r, p); err != nil {
				return nil, err
			}
			switch op {
			case 8:
				return nil, io.EOF
			case 9:
				c.write(10, p)
			}
			continue
		}
		l := len(c.buf)
		if cap(c.buf) < l+int(n) {
			nb := make([]byte, l, l+int(n)+1024)
			copy(nb, c.buf)
			c.buf = nb
		}
		c.buf = c.buf[:l+int(n)]
		if _, err := io.ReadFull(c.r, c.buf[l:]); err != nil {
			return nil, err
		}
		if fin {
			return c.buf, nil
		}
	}
}

// appendFrame appends one client frame; the masking key is zero, a valid key that makes masking a
// no-op, so the client spends nothing on it.
func appendFrame(dst []byte, op byte, p []byte) []byte {
	n := len(p)
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n < 65536:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	dst = append(dst, 0, 0, 0, 0)
	return append(dst, p...)
}

func (c *Conn) write(op byte, p []byte) error {
	return c.writeRaw(appendFrame(nil, op, p))
}

func (c *Conn) writeRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.c.Write(b)
	return err
}

func (c *Conn) text(s string) error { return c.write(1, []byte(s)) }

// ------------------------------------------------------------------------------ protocols

// handshake completes the system's connect (and, for a subscriber, its subscribe) exchange.
func handshake(c *Conn, subscriber bool) error {
	switch cfg.System {
	case "ws", "mega":
		if !subscriber {
			return nil
		}
		return until(c, func(m []byte) bool { return bytes.Contains(m, []byte(`"joined"`)) })
	case "sio":
		if err := until(c, func(m []byte) bool { return len(m) > 0 && m[0] == '0' }); err != nil {
			return err
		}
		if err := c.text("40"); err != nil {
			return err
		}
		if subscriber {
			return until(c, func(m []byte) bool { return bytes.HasPrefix(m, []byte(`42["joined"`)) })
		}
		return until(c, func(m []byte) bool { return bytes.HasPrefix(m, []byte(`40`)) })
	case "cf":
		if err := c.text(`{"id":1,"connect":{}}`); err != nil {
			return err
		}
		if err := untilReply(c, `"id":1`); err != nil {
			return err
		}
		if !subscriber {
			return nil
		}
		if err := c.text(`{"id":2,"subscribe":{"channel":"` + cfg.Channel + `"}}`); err != nil {
			return err
		}
		return untilReply(c, `"id":2`)
	}
	return fmt.Errorf("unknown system %q", cfg.System)
}

func until(c *Conn, ok func([]byte) bool) error {
	for {
		m, err := c.read()
		if err != nil {
			return err
		}
		if cfg.System == "sio" && len(m) == 1 && m[0] == '2' {
			c.text("3")
			continue
		}
		if ok(m) {
			return nil
		}
	}
}

func untilReply(c *Conn, id string) error {
	return until(c, func(m []byte) bool {
		for _, line := range bytes.Split(m, []byte("\n")) {
			if bytes.Contains(line, []byte(id)) {
				if bytes.Contains(line, []byte(`"error"`)) {
					logf("centrifugo refused: %s", line)
					os.Exit(3)
				}
				return true
			}
		}
		return false
	})
}

func publishMessage(seq int64) []byte {
	data := `{"t":` + strconv.FormatInt(nowUs(), 10) + `,"s":` + strconv.FormatInt(seq, 10) + `,"x":` + strconv.Quote(cfg.Text) + `}`
	switch cfg.System {
	case "ws":
		return []byte(`{"ch":"` + cfg.Channel + `","data":` + data + `}`)
	case "sio":
		return []byte(`42["pub",{"ch":"` + cfg.Channel + `","data":` + data + `}]`)
	case "cf":
		return []byte(`{"id":` + strconv.FormatInt(seq+10, 10) + `,"publish":{"channel":"` + cfg.Channel + `","data":` + data + `}}`)
	default:
		return []byte(`{"type":"rt.pub","payload":{"ch":"` + cfg.Channel + `","data":` + data + `}}`)
	}
}

// serve reads a connection until it closes: answers application pings and records deliveries.
func serve(c *Conn) {
	for {
		m, err := c.read()
		if err != nil {
			return
		}
		switch cfg.System {
		case "sio":
			if len(m) == 1 && m[0] == '2' {
				c.text("3")
				continue
			}
			deliver(m)
		case "cf":
			// Centrifugo writes what is queued for a connection as one frame of newline-separated replies.
			for len(m) > 0 {
				i := bytes.IndexByte(m, '\n')
				line := m
				if i >= 0 {
					line, m = m[:i], m[i+1:]
				} else {
					m = nil
				}
				if len(line) == 2 && line[0] == '{' && line[1] == '}' {
					c.text("{}")
					continue
				}
				deliver(line)
			}
		default:
			deliver(m)
		}
	}
}

var keyS, keyT = []byte(`"s":`), []byte(`"t":`)

func intAfter(m, key []byte) (int64, bool) {
	i := bytes.Index(m, key)
	if i < 0 {
		return 0, false
	}
	var v int64
	j := i + len(key)
	if j >= len(m) || m[j] < '0' || m[j] > '9' {
		return 0, false
	}
	for ; j < len(m) && m[j] >= '0' && m[j] <= '9'; j++ {
		v = v*10 + int64(m[j]-'0')
	}
	return v, true
}

func deliver(m []byte) {
	s, ok := intAfter(m, keyS)
	if !ok {
		return
	}
	t, _ := intAfter(m, keyT)
	now := nowUs()
	if s >= int64(len(counts)) {
		return
	}
	n := atomic.AddInt32(&counts[s], 1)
	if s < measureFrom.Load() {
		return
	}
	delivered.Add(1)
	hist[bucket(now-t)].Add(1)
	if n == nSubs {
		completed.Add(1)
		select {
		case completion <- struct{}{}:
		default:
		}
	}
}

// ---------------------------------------------------------------------------------- /proc

func cpuSeconds(pid int) float64 {
	path := "/proc/self/stat"
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100 // CLK_TCK is 100 on Linux
}

func rssBytes(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return -1
}

func cpus(pids []int) []float64 {
	out := make([]float64, len(pids))
	for i, p := range pids {
		out[i] = cpuSeconds(p)
	}
	return out
}

func minus(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}

// ------------------------------------------------------------------------------------ run

func connectAll(readBuf int) ([]*Conn, error) {
	var targets []string
	for _, t := range cfg.Subs {
		for i := 0; i < t.Count; i++ {
			sep := "?"
			if strings.Contains(t.URL, "?") {
				sep = "&"
			}
			targets = append(targets, t.URL+sep+"u=s"+strconv.Itoa(len(targets)))
		}
	}
	conns := make([]*Conn, len(targets))
	errs := make(chan error, len(targets))
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i, u := range targets {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, u string) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(u, readBuf)
			if err == nil {
				c.c.SetDeadline(time.Now().Add(30 * time.Second))
				err = handshake(c, true)
				c.c.SetDeadline(time.Time{})
			}
			if err != nil {
				errs <- fmt.Errorf("subscriber %d (%s): %w", i, u, err)
				return
			}
			conns[i] = c
		}(i, u)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return conns, nil
}

type Publisher struct {
	c   *Conn
	seq int64
}

func (p *Publisher) one() {
	p.c.write(1, publishMessage(p.seq))
	p.seq++
}

// burst writes n publishes with one write, so the server reads them in one go.
func (p *Publisher) burst(n int) {
	var b []byte
	for i := 0; i < n; i++ {
		b = appendFrame(b, 1, publishMessage(p.seq))
		p.seq++
	}
	p.c.writeRaw(b)
}

// waitCompleted waits until `want` publishes of the phase have reached every subscriber.
func waitCompleted(want int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for completed.Load() < want {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		select {
		case <-completion:
		case <-time.After(min(left, 50*time.Millisecond)):
		}
	}
	return true
}

func beginPhase(p *Publisher) {
	measureFrom.Store(p.seq)
	completed.Store(0)
	delivered.Store(0)
	for i := range hist {
		hist[i].Store(0)
	}
	for len(completion) > 0 {
		<-completion
	}
}

// warmUp publishes until one message reaches every subscriber (cluster paths subscribe
// asynchronously), then a short paced run, all delivered, so the phases start on a warm path.
func warmUp(p *Publisher) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := p.seq
		p.one()
		for t := time.Now().Add(200 * time.Millisecond); time.Now().Before(t) && atomic.LoadInt32(&counts[s]) < nSubs; {
			time.Sleep(2 * time.Millisecond)
		}
		if atomic.LoadInt32(&counts[s]) == nSubs {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up: no publish reached all %d subscribers in 20 s (best %d)", nSubs, atomic.LoadInt32(&counts[s]))
		}
	}
	beginPhase(p)
	for i := 0; i < 50; i++ {
		p.one()
		time.Sleep(5 * time.Millisecond)
	}
	if !waitCompleted(50, 10*time.Second) {
		return fmt.Errorf("warm-up: %d of 50 publishes reached every subscriber", completed.Load())
	}
	return nil
}

func runPhase(p *Publisher, ph Phase) PhaseResult {
	beginPhase(p)
	time.Sleep(100 * time.Millisecond)
	srv0, brk0, cli0 := cpus(cfg.Servers), cpus(cfg.Brokers), cpuSeconds(0)
	t0 := time.Now()
	end := t0.Add(time.Duration(ph.Seconds * float64(time.Second)))
	var published int64
	switch ph.Kind {
	case "paced":
		tick := time.NewTicker(time.Duration(float64(time.Second) / ph.Rate))
		for time.Now().Before(end) {
			<-tick.C
			p.one()
			published++
		}
		tick.Stop()
	case "steady", "saturated":
		// The next publish goes out when one in flight has reached every subscriber.
		for time.Now().Before(end) {
			for published-completed.Load() < int64(ph.Window) {
				p.one()
				published++
			}
			select {
			case <-completion:
			case <-time.After(5 * time.Second):
				end = time.Now()
			}
		}
	case "burst":
		for time.Now().Before(end) {
			p.burst(ph.Size)
			published += int64(ph.Size)
			if !waitCompleted(published, 10*time.Second) {
				break
			}
		}
	}
	ok := waitCompleted(published, 10*time.Second)
	seconds := time.Since(t0).Seconds()
	r := PhaseResult{
		Kind:      ph.Kind,
		Publishes: published,
		Expected:  published * int64(nSubs),
		Delivered: delivered.Load(),
		Seconds:   seconds,
		ServerCPU: minus(cpus(cfg.Servers), srv0),
		BrokerCPU: minus(cpus(cfg.Brokers), brk0),
		ClientCPU: cpuSeconds(0) - cli0,
		P50:       percentile(0.50),
		P99:       percentile(0.99),
		TimedOut:  !ok,
	}
	logf("%s: %d publishes, %d/%d deliveries in %.2f s", ph.Kind, published, r.Delivered, r.Expected, seconds)
	return r
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rtclient '<json config>'")
		os.Exit(2)
	}
	if err := json.Unmarshal([]byte(os.Args[1]), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bad config:", err)
		os.Exit(2)
	}
	for _, t := range cfg.Subs {
		nSubs += int32(t.Count)
	}
	var res Result
	res.Conns = int(nSubs)
	if cfg.Memory {
		res.RssBefore = rssAll()
	}
	t0 := time.Now()
	readBuf := 16 << 10
	if cfg.Memory {
		readBuf = 4 << 10
	}
	conns, err := connectAll(readBuf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	res.ConnectS = time.Since(t0).Seconds()
	logf("%d subscribers connected in %.1f s", len(conns), res.ConnectS)
	for _, c := range conns {
		go serve(c)
	}
	if cfg.Memory {
		// Let the servers finish what the handshakes left (timers, garbage) before reading RSS.
		time.Sleep(1500 * time.Millisecond)
		res.RssAfter = rssAll()
	} else {
		pc, err := dial(cfg.Pub, 16<<10)
		if err == nil {
			err = handshake(pc, false)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "publisher:", err)
			os.Exit(1)
		}
		go serve(pc)
		p := &Publisher{c: pc, seq: 1}
		if err := warmUp(p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for _, ph := range cfg.Phases {
			res.Phases = append(res.Phases, runPhase(p, ph))
		}
		pc.c.Close()
	}
	for _, c := range conns {
		c.c.Close()
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func rssAll() []int64 {
	out := make([]int64, 0, len(cfg.Servers))
	for _, p := range cfg.Servers {
		out = append(out, rssBytes(p))
	}
	return out
}

package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// dataServer is the embedded data source: a loopback TCP server speaking
// a line protocol over real TLS, with a challenge-response authentication
// round trip, so that opening a connection costs what it costs in life
// (TCP, TLS handshake, auth) while a query is cheap.
//
//	server: HELLO <nonce>
//	client: AUTH <database> <hex hmac-sha256(secret, nonce)>
//	server: OK | ERR <reason>
//	client: Q <n>      server: R <2n>
//	client: PING       server: PONG
type dataServer struct {
	ln       net.Listener
	tlsCfg   *tls.Config
	secret   []byte
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

// startDataServer listens on a loopback port with a fresh self-signed
// certificate and returns the server and a client TLS config that trusts it.
func startDataServer(secret string) (*dataServer, *tls.Config, error) {
	cert, pool, err := selfSigned()
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	s := &dataServer{
		ln:     ln,
		tlsCfg: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		secret: []byte(secret),
		conns:  map[net.Conn]struct{}{},
	}
	s.wg.Add(1)
	go s.serve()
	client := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	return s, client, nil
}

func (s *dataServer) Addr() string { return s.ln.Addr().String() }

func (s *dataServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.accepted.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

func (s *dataServer) handle(raw net.Conn) {
	defer raw.Close()
	c := tls.Server(raw, s.tlsCfg)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		return
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	r := bufio.NewReader(c)
	if _, err := fmt.Fprintf(c, "HELLO %x\n", nonce); err != nil {
		return
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "AUTH" || !s.validMAC(nonce, f[2]) {
		fmt.Fprintf(c, "ERR authentication failed\n")
		return
	}
	fmt.Fprintf(c, "OK\n")
	_ = c.SetDeadline(time.Time{})
	w := bufio.NewWriter(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch f := strings.Fields(line); {
		case len(f) == 1 && f[0] == "PING":
			w.WriteString("PONG\n")
		case len(f) == 2 && f[0] == "Q":
			n, err := strconv.Atoi(f[1])
			if err != nil {
				w.WriteString("ERR bad query\n")
				break
			}
			w.WriteString("R " + strconv.Itoa(2*n) + "\n")
		default:
			w.WriteString("ERR unknown command\n")
		}
		if err := w.Flush(); err != nil {
			return
		}
	}
}

func (s *dataServer) validMAC(nonce []byte, got string) bool {
	want := mac(s.secret, nonce)
	g, err := hex.DecodeString(got)
	return err == nil && hmac.Equal(g, want)
}

func mac(secret, nonce []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write(nonce)
	return h.Sum(nil)
}

// Close stops accepting, closes every connection and waits for the
// handlers to exit.
func (s *dataServer) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "poolbench"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}

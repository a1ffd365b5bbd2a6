// adtrack-ferretdb: FerretDB 1.24 (a MongoDB wire-protocol server) with its SQLite handler,
// embedded through the github.com/FerretDB/FerretDB/ferretdb package, for adtrack's tests.
//
// Why embedded instead of `go install .../cmd/ferretdb`: that binary panics at start-up
// because build/version/version.txt is not part of the published module. The embedding
// API reads no such file, keeps telemetry off, and lets us print the bound address.
//
// Contract with scripts/ferretdb.sh and tests/support/at_test_infra.c:
//   - the first stdout line is the MongoDB URI (mongodb://127.0.0.1:PORT, no path), printed
//     once the listener accepts connections;
//   - SIGTERM or SIGINT closes the listener and the SQLite files, then exits 0;
//   - anything else (logs, errors) goes to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on (host:port; port 0 picks a free one)")
	dir := flag.String("dir", "", "directory for the SQLite files, one per database (created if missing; required)")
	tlsListen := flag.String("tls-listen", "", "also listen with TLS on this address (needs --tls-cert and --tls-key)")
	tlsCert := flag.String("tls-cert", "", "TLS server certificate (PEM)")
	tlsKey := flag.String("tls-key", "", "TLS server key (PEM)")
	tlsCA := flag.String("tls-ca", "", "CA certificate to verify client certificates (PEM; optional)")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error (to stderr)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s --dir DIR [--listen 127.0.0.1:PORT] [options]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()

	if err := run(*listen, *dir, *tlsListen, *tlsCert, *tlsKey, *tlsCA, *logLevel); err != nil {
		fmt.Fprintf(os.Stderr, "adtrack-ferretdb: %s\n", err)
		os.Exit(1)
	}
}

func run(listen, dir, tlsListen, tlsCert, tlsKey, tlsCA, logLevel string) error {
	if dir == "" {
		return errors.New("--dir: required (the SQLite directory)")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("--dir %q: %w", dir, err)
	}
	if err = os.MkdirAll(abs, 0o755); err != nil {
		return fmt.Errorf("--dir %q: %w", dir, err)
	}
	if tlsListen != "" && (tlsCert == "" || tlsKey == "") {
		return errors.New("--tls-listen needs --tls-cert and --tls-key")
	}

	var level slog.Level
	if err = level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: expected debug, info, warn or error", logLevel)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// The SQLite handler wants a file: URI naming a directory, with a trailing slash.
	sqliteURL := (&url.URL{Scheme: "file", Path: strings.TrimSuffix(abs, "/") + "/"}).String()

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{
			TCP:         listen,
			TLS:         tlsListen,
			TLSCertFile: tlsCert,
			TLSKeyFile:  tlsKey,
			TLSCAFile:   tlsCA,
		},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	// MongoDBURI() waits for the listener to be bound; then prove it accepts before
	// announcing it, so that a reader of the first line can connect at once.
	// With a TLS listener, MongoDBURI() names the TLS one (and waits for it); the plain
	// listener, whose URI is the first line, is then the --listen address itself.
	uri := f.MongoDBURI()
	u, err := url.Parse(uri)
	if err != nil {
		return fmt.Errorf("listener URI %q: %w", uri, err)
	}
	hosts := []string{u.Host}
	plain := u.Host
	if tlsListen != "" {
		if strings.HasSuffix(listen, ":0") {
			return errors.New("--tls-listen needs a fixed --listen port")
		}
		plain = listen
		hosts = append(hosts, listen)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, h := range hosts {
		for {
			c, derr := net.DialTimeout("tcp", h, time.Second)
			if derr == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("listener %s does not accept connections: %w", h, derr)
			}
			select {
			case err = <-done:
				return fmt.Errorf("stopped before accepting connections: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	// Printed without a path, like tests/support/mockupdb_server.py's URI, so that
	// callers can append "/adtrack" or "/?opts" to either.
	fmt.Println("mongodb://" + plain)

	return <-done
}

// Command podserver is the lab's stand-in for an application pod: an HTTP
// server in a pod's network namespace that answers with its name and the
// address the request came from, and logs that address, so tests can tell
// which pod served a request and whether the client's IP survived the trip.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	name := flag.String("name", "pod", "name to answer with")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Info("request", "pod", *name, "remote", r.RemoteAddr, "path", r.URL.Path)
		fmt.Fprintf(w, "%s %s\n", *name, r.RemoteAddr)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving", "pod", *name, "listen", *listen)
	if err := srv.ListenAndServe(); err != nil {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}

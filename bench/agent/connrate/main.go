// Command connrate measures new TCP connections per second: each
// connection connects, sends one byte, reads it back and closes, as the
// OVN peer benchmark in the project's shared notes does.
//
//	connrate -listen :7200                 # server
//	connrate -connect 10.0.2.10:7200 -p 8 -d 5s
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	listen := flag.String("listen", "", "serve on this address")
	connect := flag.String("connect", "", "connect to this address")
	par := flag.Int("p", 1, "parallel workers")
	dur := flag.Duration("d", 5*time.Second, "duration")
	flag.Parse()
	switch {
	case *listen != "":
		serve(*listen)
	case *connect != "":
		run(*connect, *par, *dur)
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func serve(addr string) {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			b := make([]byte, 1)
			if _, err := c.Read(b); err == nil {
				c.Write(b)
			}
		}()
	}
}

func run(addr string, par int, dur time.Duration) {
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := []byte{1}
			for time.Now().Before(deadline) {
				start := time.Now()
				c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
				if err == nil {
					c.SetDeadline(time.Now().Add(2 * time.Second))
					_, err = c.Write(b)
					if err == nil {
						_, err = c.Read(b)
					}
					c.Close()
				}
				mu.Lock()
				if err != nil {
					errs++
				} else {
					lat = append(lat, time.Since(start))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	p50 := time.Duration(0)
	if len(lat) > 0 {
		p50 = lat[len(lat)/2]
	}
	fmt.Printf("%.0f conns/s p50 %s errors %d\n", float64(len(lat))/dur.Seconds(), p50.Round(time.Microsecond), errs)
}

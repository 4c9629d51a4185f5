// Command barerelay is the smallest pinned relay worth comparing nicproxy
// with: it accepts on one address, dials one fixed target through a socket
// pinned to a NIC, and splices the two connections. No protocol, no rules,
// no logging: the per-connection floor of any relay on this host. The
// speed benchmark runs it beside nicproxy.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"nicproxy/bind"
)

func main() {
	listen := flag.String("l", "127.0.0.1:2080", "listen `ADDR`")
	target := flag.String("t", "", "dial `HOST:PORT` for every client")
	nic := flag.String("i", "", "pin upstream sockets to `NIC`")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening", ln.Addr()) // the benchmark waits for this line
	dialer := bind.NewDialer(*nic, bind.Options{}, nil)
	for {
		client, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go relay(client, dialer, *target)
	}
}

func relay(client net.Conn, dialer *bind.Dialer, target string) {
	defer client.Close()
	up, err := dialer.DialContext(context.Background(), "tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, client)
		up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(client, up)
	client.(*net.TCPConn).CloseWrite()
	<-done
}

// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 for the test control
// plane (Debian's etcd 3.4 is too old for streaming-list watches).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

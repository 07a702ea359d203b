// etcd (go.etcd.io/etcd/server/v3), pinned by this module's go.mod/go.sum: the etcd binary's
// own entry point, etcdmain.Main, built without the root module (its replace directives keep
// `go install` from building it).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

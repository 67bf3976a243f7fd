// Command extjob is a Weir job in a module of its own, as users write them,
// for the tests of package artifact: they build it with a go.mod that
// requires Weir and replaces it with the checkout under test.
package main

import (
	"fmt"
	"os"

	"github.com/weirstream/weir/stream"
)

func main() {
	env := stream.NewEnvironment()
	if err := env.Execute("extjob"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

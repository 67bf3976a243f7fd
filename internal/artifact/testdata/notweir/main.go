// Command notweir is a Go program that does not use Weir, for the tests of
// package artifact.
package main

import "fmt"

func main() { fmt.Println("not a Weir job") }

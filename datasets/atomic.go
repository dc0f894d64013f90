package datasets

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeFileAtomic writes data to path through a temporary file in the same
// directory and a rename, creating the parent directory when needed. The file
// is not fsynced: the rename protects against a killed process, which is the
// failure that matters for data files, at a fraction of the cost of a sync
// per file.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: create folder: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return commitTemp(tmp, path)
}

// commitTemp gives a finished temporary file the usual permissions and
// renames it to path, removing it when either step fails.
func commitTemp(tmp, path string) error {
	// os.CreateTemp makes files 0600; data files are meant to be shared.
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// tempPathLike returns an unused temporary path in path's directory that keeps
// path's extension, for writers (such as OpenCV's VideoWriter) that choose the
// file format from the name and write the file themselves.
func tempPathLike(path string) (string, error) {
	dir := filepath.Dir(path)
	ext := filepath.Ext(path)
	base := filepath.Base(path)
	f, err := os.CreateTemp(dir, "."+base[:len(base)-len(ext)]+".tmp-*"+ext)
	if err != nil {
		return "", err
	}
	name := f.Name()
	f.Close()
	return name, nil
}

// Command argo-events-lint is `argo-events lint` from Argo Events, plus EventBus validation.
//
// `go install github.com/argoproj/argo-events/cmd@v1.9.11` builds the whole argo-events binary
// (controller, eventsource and sensor runtimes, webhook) under the name "cmd"; its `lint`
// subcommand validates EventSources and Sensors only and silently skips EventBus documents.
// This program runs that very lint command (cmd/commands.NewLintCommand, same flags, output and
// exit codes) and, before it, validates every EventBus document in the same paths with the
// controller's own pkg/reconciler/eventbus.ValidateEventBus, reported in the same format.
//
// Usage: argo-events-lint [-R] [--strict] PATH...
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/argoproj/argo-events/cmd/commands"
	"github.com/argoproj/argo-events/pkg/apis/events/v1alpha1"
	"github.com/argoproj/argo-events/pkg/client/clientset/versioned/scheme"
	eventbuscontroller "github.com/argoproj/argo-events/pkg/reconciler/eventbus"
)

const eventsModule = "github.com/argoproj/argo-events"

func moduleVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == eventsModule {
				return dep.Version
			}
		}
	}
	return "unknown"
}

// yamlFiles lists the files upstream lint would read for path: the file itself, or the .yaml/.yml
// files of a directory (of its subdirectories too with -R).
func yamlFiles(path string, recursive bool) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, entry := range entries {
		child := filepath.Join(path, entry.Name())
		if entry.IsDir() {
			if recursive {
				sub, err := yamlFiles(child, recursive)
				if err != nil {
					return nil, err
				}
				files = append(files, sub...)
			}
			continue
		}
		ext := strings.ToLower(filepath.Ext(entry.Name()))
		if ext == ".yaml" || ext == ".yml" {
			files = append(files, child)
		}
	}
	return files, nil
}

// lintEventBuses validates the EventBus documents of one file, splitting and decoding documents
// the way upstream lint does for EventSources and Sensors. It reports whether any failed.
func lintEventBuses(filename string) (bool, error) {
	data, err := os.ReadFile(filename)
	if err != nil {
		return true, err
	}
	documents := strings.Split(string(data), "\n---\n")
	failed := false
	for i, doc := range documents {
		doc = strings.TrimSpace(doc)
		if doc == "" {
			continue
		}
		var obj unstructured.Unstructured
		if err := yaml.NewYAMLOrJSONDecoder(strings.NewReader(doc), 4096).Decode(&obj); err != nil {
			continue // not a Kubernetes object: upstream lint skips it too
		}
		if obj.GetKind() != "EventBus" {
			continue
		}
		name := filename
		if len(documents) > 1 {
			name = fmt.Sprintf("%s (document %d)", filename, i+1)
		}
		runtimeObj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			fmt.Printf("✗ %s: Failed to decode\n", name)
			fmt.Printf("  Error: %v\n", err)
			failed = true
			continue
		}
		bus, ok := runtimeObj.(*v1alpha1.EventBus)
		if !ok {
			continue
		}
		if err := eventbuscontroller.ValidateEventBus(bus); err != nil {
			fmt.Printf("✗ %s: EventBus validation failed\n", name)
			fmt.Printf("  Error: %v\n", err)
			failed = true
		} else {
			fmt.Printf("✓ %s: EventBus is valid\n", name)
		}
	}
	return failed, nil
}

func newCommand() *cobra.Command {
	command := commands.NewLintCommand()
	command.Use = "argo-events-lint PATH..."
	command.Short = "argo-events lint: validate EventSource, Sensor and EventBus resource files"
	command.Long = strings.Replace(command.Long, "Lint validates EventSource and Sensor resource files.",
		"Lint validates EventSource and Sensor resource files (upstream argo-events lint) and\n"+
			"EventBus resource files (with the controller's EventBus validation).", 1)
	command.Long = strings.ReplaceAll(command.Long, "argo-events lint ", "argo-events-lint ")
	var version bool
	command.Flags().BoolVar(&version, "version", false, "Print the Argo Events module version and exit")
	upstreamRun := command.Run
	command.Run = func(cmd *cobra.Command, args []string) {
		if version {
			fmt.Printf("argo-events-lint (%s %s)\n", eventsModule, moduleVersion())
			return
		}
		recursive, err := cmd.Flags().GetBool("recursive")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		busFailed := false
		for _, path := range args {
			files, err := yamlFiles(path, recursive)
			if err != nil {
				continue // upstream lint reports unreadable paths below
			}
			for _, file := range files {
				failed, err := lintEventBuses(file)
				if err != nil {
					fmt.Fprintf(os.Stderr, "Error processing file %s: %v\n", file, err)
				}
				busFailed = busFailed || failed
			}
		}
		upstreamRun(cmd, args) // exits with status 1 itself on an EventSource or Sensor error
		if busFailed {
			os.Exit(1)
		}
	}
	return command
}

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}

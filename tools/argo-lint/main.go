// Command argo-lint is `argo lint --offline` from Argo Workflows, without the rest of the argo CLI.
//
// The upstream CLI (cmd/argo) cannot be `go install`ed since v3.7 because it embeds the UI build,
// so this program wires the same pieces the CLI's lint command uses: the offline API client
// (pkg/apiclient with Offline=true, which loads every WorkflowTemplate and ClusterWorkflowTemplate
// found in the given paths so that templateRefs and workflowTemplateRefs resolve) and the CLI's
// own lint package (cmd/argo/lint). Flags, output formats and exit codes follow `argo lint`.
//
// Usage: argo-lint [--kinds=...] [-o pretty|simple] [--strict=true|false] [--no-color] PATH...
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/argoproj/argo-workflows/v4/cmd/argo/commands/common"
	"github.com/argoproj/argo-workflows/v4/cmd/argo/lint"
	"github.com/argoproj/argo-workflows/v4/pkg/apiclient"
	wf "github.com/argoproj/argo-workflows/v4/pkg/apis/workflow"
	cmdutil "github.com/argoproj/argo-workflows/v4/util/cmd"
)

const workflowsModule = "github.com/argoproj/argo-workflows/v4"

// The same list and order as cmd/argo/commands/lint.go.
var allKinds = []string{wf.WorkflowPlural, wf.WorkflowTemplatePlural, wf.CronWorkflowPlural, wf.ClusterWorkflowTemplatePlural}

func moduleVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == workflowsModule {
				return dep.Version
			}
		}
	}
	return "unknown"
}

func newCommand() *cobra.Command {
	var (
		strict    bool
		offline   bool
		version   bool
		lintKinds []string
		logLevel  string
		logFormat string
		output    = common.EnumFlagValue{AllowedValues: []string{"pretty", "simple"}, Value: "pretty"}
	)
	command := &cobra.Command{
		Use:   "argo-lint PATH...",
		Short: "argo lint --offline: validate files or directories of Argo Workflows manifests",
		Long: `Lints Workflows, WorkflowTemplates, CronWorkflows and ClusterWorkflowTemplates offline,
exactly as "argo lint --offline" of ` + workflowsModule + ` does. Every path is also loaded as a
source of (Cluster)WorkflowTemplates, so pass referenced templates in the same invocation.
Exit status: 0 when everything linted is valid, 1 on any finding, on a parse error, or when
nothing lintable was found.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if version {
				fmt.Printf("argo-lint (%s %s)\n", workflowsModule, moduleVersion())
				return nil
			}
			if len(args) == 0 {
				return errors.New("requires at least 1 arg(s), only received 0")
			}
			if !offline {
				return errors.New("only offline linting is supported (--offline=false needs a cluster)")
			}
			ctx, _, err := cmdutil.ContextWithLogger(cmd, logLevel, logFormat)
			if err != nil {
				return err
			}
			return runLint(ctx, args, lintKinds, output.String(), strict)
		},
	}
	command.Flags().StringSliceVar(&lintKinds, "kinds", []string{"all"}, fmt.Sprintf("Which kinds will be linted. Can be: %s", strings.Join(allKinds, "|")))
	command.Flags().VarP(&output, "output", "o", "Linting results output format. "+output.Usage())
	command.Flags().BoolVar(&strict, "strict", true, "Perform strict workflow validation (reject unknown fields)")
	command.Flags().BoolVar(&offline, "offline", true, "Accepted for parity with argo lint; always on")
	command.Flags().BoolVar(&common.NoColor, "no-color", false, "Disable colorized output")
	command.Flags().StringVar(&logLevel, "loglevel", "info", "Set the logging level. One of: debug|info|warn|error")
	command.Flags().StringVar(&logFormat, "log-format", "text", "The formatter to use for logs. One of: text|json")
	command.Flags().BoolVar(&version, "version", false, "Print the Argo Workflows module version and exit")
	return command
}

// runLint is cmd/argo/commands/lint.go's runLint with client.Offline forced on.
func runLint(ctx context.Context, args []string, lintKinds []string, output string, strict bool) error {
	ctx, apiClient, err := apiclient.NewClientFromOptsWithContext(ctx, apiclient.Opts{Offline: true, OfflineFiles: args})
	if err != nil {
		return err
	}
	if len(lintKinds) == 0 || strings.Contains(strings.Join(lintKinds, ","), "all") {
		lintKinds = allKinds
	}
	opts := lint.Options{
		Files:            args,
		Strict:           strict,
		DefaultNamespace: "", // client.Namespace() is "" in offline mode
		Printer:          os.Stdout,
	}
	// RunLint prints the findings and exits with status 1 when linting fails.
	return lint.RunLint(ctx, apiClient, lintKinds, output, true, opts)
}

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "argo-lint: %v\n", err)
		os.Exit(1)
	}
}

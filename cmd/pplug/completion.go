package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"
)

// Shell completion. bash and zsh ask the program itself for candidates:
// urfave/cli answers "pplug ... --generate-bash-completion" with the
// subcommands, or with the flags when the word being completed starts with
// "-". fish gets a static script generated from the command tree.

const bashCompletion = `# bash completion for %[1]s; load with: source <(%[1]s completion bash)
_%[2]s_complete() {
	local cur="${COMP_WORDS[COMP_CWORD]}" out
	if [[ "$cur" == -* ]]; then
		out=$("${COMP_WORDS[@]:0:COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
	else
		out=$("${COMP_WORDS[@]:0:COMP_CWORD}" --generate-bash-completion 2>/dev/null)
	fi
	local IFS=$'\n'
	COMPREPLY=($(compgen -W "$out" -- "$cur"))
}
complete -o bashdefault -o default -F _%[2]s_complete %[1]s
`

const zshCompletion = `#compdef %[1]s
# zsh completion for %[1]s; load with: source <(%[1]s completion zsh)
# (or save it as _%[1]s in a folder of $fpath)
_%[2]s() {
	local cur=${words[CURRENT]}
	local -a opts
	if [[ "$cur" == -* ]]; then
		opts=("${(@f)$(${words[1,CURRENT-1]} "$cur" --generate-bash-completion 2>/dev/null)}")
	else
		opts=("${(@f)$(${words[1,CURRENT-1]} --generate-bash-completion 2>/dev/null)}")
	fi
	opts=(${opts:#})
	if (( ${#opts} )); then
		compadd -a opts
	else
		_files
	fi
}
if [[ "$funcstack[1]" == "_%[2]s" ]]; then
	_%[2]s "$@"
else
	compdef _%[2]s %[1]s
fi
`

var fishOldStyle = regexp.MustCompile(` -s ([A-Za-z0-9][A-Za-z0-9-]+) `)

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		UsageText: "source <(pplug completion bash)      # bash: add to ~/.bashrc\n   source <(pplug completion zsh)       # zsh: add to ~/.zshrc\n   pplug completion fish > ~/.config/fish/completions/pplug.fish",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("completion: name one shell: bash, zsh or fish")
			}
			name := c.App.Name
			fn := strings.Map(func(r rune) rune {
				if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
					return r
				}
				return '_'
			}, name)
			var script string
			switch sh := c.Args().First(); sh {
			case "bash":
				script = fmt.Sprintf(bashCompletion, name, fn)
			case "zsh":
				script = fmt.Sprintf(zshCompletion, name, fn)
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return fmt.Errorf("fish completion: %w", err)
				}
				// fish's -s is a one-letter option; llama.cpp's -ngl, -fa,
				// -ub are old-style options (-o).
				script = fishOldStyle.ReplaceAllString(s, " -o $1 ")
			default:
				return usagef("completion: unknown shell %q (want bash, zsh or fish)", sh)
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}

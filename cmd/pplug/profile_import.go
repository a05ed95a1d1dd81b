package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/persona/store"
)

// profileImportCommand is `pplug profile import`: a JSON/JSONL/LaMP
// profile file into a user of the serve command's profile database.
func profileImportCommand() *cli.Command {
	flags := []cli.Flag{
		verboseFlag(),
		profilesFlag(),
		&cli.StringFlag{Name: "user", Usage: "the user `ID` to import into (created when missing)"},
		&cli.BoolFlag{Name: "replace", Usage: "replace the user's items with the profile's (in one transaction; the user keeps their API key)"},
	}
	flags = append(flags, profileFlags()...)
	return &cli.Command{
		Name:      "import",
		Usage:     "import a profile file (JSON array, JSON Lines, LaMP question) into a user of the profile database (pplug serve)",
		UsageText: "pplug profile import --profiles DB --user ID --profile HISTORY.json [--task lamp5 | --fields a,b] [--question-id Q] [--replace]",
		Flags:     flags,
		Action:    runProfileImport,
	}
}

func runProfileImport(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	ctx := c.Context
	user := c.String("user")
	switch {
	case c.String("profile") == "":
		return usagef("give the profile with --profile FILE")
	case user == "":
		return usagef("give the user with --user ID")
	case !store.ValidUserID(user):
		return usagef("--user %q: %v", user, store.ErrBadUserID)
	}
	prof, _, err := loadProfile(c)
	if err != nil {
		return err
	}
	if len(prof.Items) == 0 {
		return fmt.Errorf("profile %s: no usable items to import", c.String("profile"))
	}
	path, err := profilesPath(c)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, path)
	if err != nil {
		return err
	}
	defer st.Close()
	key := ""
	if _, err := st.User(ctx, user); errors.Is(err, store.ErrNotFound) {
		key = store.NewKey()
		if _, err := st.CreateUser(ctx, user, key); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	write := st.AddItems
	if c.Bool("replace") {
		write = st.ReplaceItems // one transaction; the user keeps their key
	}
	added, err := write(ctx, user, store.FromProfile(prof))
	if err != nil {
		return fmt.Errorf("import %s into %s: %w", c.String("profile"), path, err)
	}
	u, err := st.User(ctx, user)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "imported %d items into user %q (%d items in all) in %s\n", len(added), user, u.Items, path)
	if key != "" {
		fmt.Fprintf(c.App.Writer, "user API key (shown once): %s\n", key)
	}
	return nil
}

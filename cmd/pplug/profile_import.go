package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/persona/profile"
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
		&cli.BoolFlag{Name: "upsert", Usage: "replace the user's items that have the ids of the profile's items, add the others (without it an id the user has is an error)"},
	}
	flags = append(flags, profileFlags()...)
	return &cli.Command{
		Name:      "import",
		Usage:     "import a profile file (JSON array, JSON Lines, LaMP question) into a user of the profile database (pplug serve)",
		UsageText: "pplug profile import --profiles DB --user ID --profile HISTORY.json [--task lamp5 | --fields a,b] [--question-id Q] [--max-items N] [--replace | --upsert]",
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
		return usagef("--user %s: %v", profile.QuoteID(user), store.ErrBadUserID)
	case c.Bool("replace") && c.Bool("upsert"):
		return usagef("give --replace (the whole history) or --upsert (items by id), not both")
	}
	popts, err := profileOptionsFrom(c)
	if err != nil {
		return err
	}
	prof, _, err := popts.load(ctx)
	if err != nil {
		return err
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
	key, err := ensureUser(ctx, st, user)
	if err != nil {
		return err
	}
	added, err := importWrite(c, st)(ctx, user, store.FromProfile(prof))
	if errors.Is(err, store.ErrItemExists) {
		err = fmt.Errorf("%w: an id names one item; pass --upsert to replace the items with the profile's ids, or --replace to replace the whole history", err)
	}
	if err != nil {
		return fmt.Errorf("import %s into %s: %w", c.String("profile"), st.Path(), err)
	}
	u, err := st.User(ctx, user)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "imported %d items into user %q (%d items in all) in %s\n", len(added), user, u.Items, st.Path())
	if key != "" {
		fmt.Fprintf(c.App.Writer, "user API key (shown once): %s\n", key)
	}
	return nil
}

// ensureUser creates the user when missing and returns their new key
// ("" when the user was there, also when created meanwhile by another).
func ensureUser(ctx context.Context, st *store.Store, user string) (string, error) {
	if _, err := st.User(ctx, user); !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	key := store.NewKey()
	if _, err := st.CreateUser(ctx, user, key); errors.Is(err, store.ErrExists) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	return key, nil
}

// importWrite is the store write --replace and --upsert ask for.
func importWrite(c *cli.Context, st *store.Store) func(context.Context, string, []store.NewItem) ([]store.Item, error) {
	switch {
	case c.Bool("replace"):
		return st.ReplaceItems // one transaction; the user keeps their key
	case c.Bool("upsert"):
		return st.UpsertItems
	}
	return st.AddItems
}

// Package lamp reads and writes the files of the LaMP personalisation
// benchmark (Salemi et al., ACL 2024), describes its tasks and scores
// predictions exactly as the official LaMP scorer does.
//
// # Files
//
// A split of a task has two files:
//
//	{split}_questions.json  [{"id", "input", "profile": [{"id", <task fields>}, ...]}, ...]
//	{split}_outputs.json    {"task": "LaMP_X", "golds": [{"id", "output"}, ...]}
//
// Predictions use the outputs format. Questions files can be hundreds of
// megabytes, so QuestionReader (and ScanQuestions, FindQuestion) decode them
// one question at a time. Profile item fields differ between tasks (title,
// abstract, description, tag, text, score, date, ...) and may be strings or
// numbers; ProfileItem keeps them all as text, numbers exactly as written.
// Errors are *DataError values that name the file, the element and what is
// wrong. Files are written atomically (WriteAtomic).
//
// # Tasks
//
// Task describes LaMP-1, 2, 3, 4, 5 and 7, on the user-based split
// ("LaMP_2") or the time-based one ("LaMP_time_2", which PPlug reports):
// the kind of output, the label set, the metrics, the profile fields that
// make up an item's text (ProfileText) and the part of an input that
// describes the current item (QueryPart). ParseTask accepts names leniently.
//
// # Scoring
//
// Score and ScoreFiles reproduce the official scorer: predictions and golds
// are only stripped (PyStrip); LaMP-1/2 report accuracy and macro-F1 over
// all labels; LaMP-3 reports MAE and RMSE with unparsable predictions
// replaced by the farther of 1 and 5 (ParsePyFloat, RatingFallback); the
// generation tasks report the mean ROUGE-1 and ROUGE-L F-measures of
// Google's rouge_score without stemming (RougeTokens, Rouge1Score,
// RougeLScore). Scores marshals to JSON with stable names and renders
// markdown table rows.
package lamp

/*
 * Training data for continued pre-training (dataset `type: text` / `completion`):
 *   1. read documents: a .txt file is one document; a .jsonl file has one JSON object per line
 *      with a string field ("text" unless the config names another);
 *   2. tokenize each document (BOS as the tokenizer adds it) and append EOS, concatenating all
 *      documents of all files into one token stream;
 *   3. cut the stream into rows of T = sequence_len tokens (the tail that does not fill a row is
 *      dropped, as HF's group_texts does); the labels of a row are its inputs shifted by one, the
 *      last position has no target (-100), exactly as HF causal LM models shift labels;
 *   4. split rows into train / validation (val_set_size: a fraction or a count) with a seeded
 *      shuffle, and give each epoch its own seeded order of the train rows.
 * Not here: instruction formats, chat templates, packing with attention masks (next issue).
 */
#ifndef FTUNE_DATA_H
#define FTUNE_DATA_H

#include "ftune/core.h"

#define FT_IGNORE_INDEX (-100)

typedef struct {
    char **docs;   /* (n) NUL-terminated UTF-8 */
    size_t *lens;  /* (n) */
    size_t n;
    /* where each document comes from, for messages (NULL when documents are filled by hand) */
    int *src;      /* (n) index into files */
    size_t *lines; /* (n) line in a .jsonl file; 0: the whole .txt file */
    char **files;  /* (n_files) the paths read */
    int n_files;
} ft_text_docs;

/* Append the documents of `path` (.txt or .jsonl; `field` is the JSON key) to `d`. Errors name
 * the file and line: "data.jsonl:12: invalid JSON", "data.jsonl:3: no string field 'text'". */
ft_status ft_text_docs_read(ft_text_docs *d, const char *path, const char *field);
void ft_text_docs_free(ft_text_docs *d);

/* How the dataset tokenizes: encode `text` into a malloc'ed id array (*ids, *n), adding BOS if the
 * tokenizer does. Lets the data module stay independent of the tokenizer's implementation. */
typedef ft_status (*ft_encode_fn)(void *ctx, const char *text, size_t len, int **ids, size_t *n);

typedef struct {
    int *tokens;       /* (n_rows * T) the rows, back to back */
    int64_t n_rows;
    int T;
    int64_t *train;    /* (n_train) row indices */
    int64_t n_train;
    int64_t *val;      /* (n_val) row indices */
    int64_t n_val;
    int64_t n_stream;  /* tokens in the stream before cutting (for the log) */
} ft_text_dataset;

/* Tokenize all documents, join with eos_id, cut into rows of T, split off validation rows:
 * val_size < 1 is a fraction of the rows (rounded up, as HF's train_test_split does), >= 1 a count.
 * Fails if there is no row at all, or no train row left after the split. */
ft_status ft_text_dataset_build(ft_text_dataset *ds, const ft_text_docs *docs, ft_encode_fn enc,
                                void *enc_ctx, int eos_id, int T, double val_size, uint64_t seed);
void ft_text_dataset_free(ft_text_dataset *ds);
/* The validation rows val_size asks of n (text rows or instruction samples): 0 for val_size <= 0,
 * a fraction of n rounded up for val_size < 1 (HF's train_test_split), else a count, at most n
 * (no conversion past int64). */
int64_t ft_val_rows(double val_size, int64_t n);

/* Inputs and labels (each T ints) of row `row`: labels[t] = inputs[t+1], labels[T-1] = -100. */
void ft_text_row(const ft_text_dataset *ds, int64_t row, int *inputs, int *labels);

/* The order of the n train rows in `epoch` (0-based): a Fisher-Yates shuffle seeded by
 * (seed, epoch), so any position of any epoch can be recomputed on resume. */
void ft_data_epoch_order(int64_t *order, int64_t n, uint64_t seed, int64_t epoch);

#endif

"""What keeps a report's size independent of the number of samples: caps on rows, columns, samples
and characters (texts over a limit are clipped with a visible marker)."""

MAX_BYTES = 20_000_000  # hard ceiling for one report (galleries shrink until it fits)
MAX_TABLE_ROWS = 40  # rows per breakdown table (the rest is counted, not shown)
MAX_TABLES_PER_TASK = 20  # breakdown tables per task
MAX_METRICS_PER_TASK = 60  # rows of the summary per task
MAX_TRANSCRIPTS = 4  # conversations shown per task
MAX_TURNS = 12  # turns shown per conversation
MAX_GALLERY_TURNS = 8  # turns shown per gallery card
MAX_COLUMNS = 4  # runs shown side by side in galleries / transcripts (baseline + 3)
MAX_PLOT_SERIES = 2 * MAX_COLUMNS
THUMB_PX = 96
# Truncation limits (characters) for strings shown in the page.
LIMITS = {"prompt": 1500, "prediction": 600, "reference": 300, "instruction": 400, "short": 160, "cell": 200}

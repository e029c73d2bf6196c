"""Column names, event kinds and default paths shared by every module.

Functions take column names as ``col_*`` keyword arguments whose defaults come
from here, so a table with other column names can be used without renaming.
"""

# Column names of the three tables (see ``vidrec_lab.tables``).
COL_USER = "user_id"
COL_ITEM = "item_id"
COL_TIMESTAMP = "timestamp"
COL_EVENT = "event"
COL_VALUE = "value"
COL_TITLE = "title"
COL_DESCRIPTION = "description"
COL_TAGS = "tags"
COL_GENRES = "genres"
COL_YEAR = "year"
COL_VIDEO_PATH = "video_path"
COL_COVER_PATH = "cover_path"
COL_AUDIO_PATH = "audio_path"

# Event kinds found in interaction tables.
EVENT_VIEW = "view"
EVENT_LIKE = "like"
EVENT_FAVORITE = "favorite"
EVENT_RATING = "rating"
EVENTS = (EVENT_VIEW, EVENT_LIKE, EVENT_FAVORITE, EVENT_RATING)

ITEM_COLUMNS = (
    COL_ITEM,
    COL_TITLE,
    COL_DESCRIPTION,
    COL_TAGS,
    COL_GENRES,
    COL_YEAR,
    COL_VIDEO_PATH,
    COL_COVER_PATH,
    COL_AUDIO_PATH,
)
INTERACTION_COLUMNS = (COL_USER, COL_ITEM, COL_TIMESTAMP, COL_EVENT, COL_VALUE)

# Environment variable naming a dataset folder (or a folder that contains several).
ENV_DATA = "VIDREC_LAB_DATA"
# Environment variable naming the folder where outputs/ and figures/ are written.
ENV_HOME = "VIDREC_LAB_HOME"

DEFAULT_SEED = 42

# Pseudonymous ids (see vidrec_lab.privacy). "1" in the first variable turns pseudonymisation on for
# everything written. The key comes from the second variable, else from the file the third one names.
ENV_PSEUDONYMIZE = "VIDREC_LAB_PSEUDONYMIZE"
ENV_PSEUDONYM_KEY = "VIDREC_LAB_PSEUDONYM_KEY"
ENV_PSEUDONYM_KEY_FILE = "VIDREC_LAB_PSEUDONYM_KEY_FILE"

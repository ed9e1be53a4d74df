"""What a sync did and where everything stands, as text for people (the CLI's tables), built
from the values the pipeline returns."""

"""Stage 7: feature tables computed with polars from the unified tables, committed to Delta."""

from lakesync.features.build import FeatureBuild, build_feature, feature_frame, input_versions

__all__ = ["FeatureBuild", "build_feature", "feature_frame", "input_versions"]

"""Sources of directory data. Each turns what it reads into sync.records.SourceData."""

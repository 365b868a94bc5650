"""The national care-capacity model: vocabularies and the location/vacancy-line types."""

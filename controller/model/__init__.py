"""The model: Berth's vocabulary as pure data (phases, names, spec, records, containers,
outcome, errors, settings). Imports nothing of Berth but itself."""

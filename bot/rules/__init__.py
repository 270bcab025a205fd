"""The pure rules, apart from I/O-heavy layers: prices and budgets (credits), prompt text
and names (prompts), photo checks (photos), and taking photos in (intake)."""

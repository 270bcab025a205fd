"""Pictures of the bot's numbers for admins and members, drawn from plain values (no
Discord, no store): the actions read the data and hand the bytes to the front."""

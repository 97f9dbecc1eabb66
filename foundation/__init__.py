"""What every package may use and that uses none of them: settings, database
engines and transactions, the raw statement runner, and the clock.

It sits at the bottom of the import direction (cli → api → policies → vault →
audit → foundation), so nothing here imports a package of the vault.
"""

"""Published interventions as arms: monitors, inoculation, advantage modification, TDGA."""

"""The CRM side (`appliance bridge`): consumes the boxes' scores from the broker into a central
database, computes relationship health across boxes, delivers alerts as signed webhooks."""

"""Hand-written public-holiday tables for 2026 and 2027, used to check the
``holidays`` (python-holidays) package on its own terms.

Each table was first written from the published rules. Those rules are US
federal law (5 U.S.C. 6103), New York General Construction Law s.24, gov.uk
bank holidays for England and Wales, German federal and Bavarian law, and
the NYSE holiday calendar. The tables were then compared with holidays 0.109.
Dates agree everywhere. The only name that differed was the German Whit
Monday, which now uses the library's English name "Pentecost Monday".

Names are the library's English names. US and NYSE use en_US, GB uses en_GB
and DE uses en_US. Note that ``country_holidays("DE", ...)`` picks its default
language from the locale. Under C.UTF-8 it returns English, but under de_DE
it returns German names such as "Neujahr". Pass ``language="en_US"`` to
compare names reliably.

Easter Sunday is 5 April 2026 and 28 March 2027.
"""

from datetime import date

# holidays.country_holidays("US", subdiv="NY"): federal holidays plus the
# New York additions (Lincoln's Birthday, Susan B. Anthony Day and Election
# Day). Observed days follow the federal rule: Saturday moves to Friday and
# Sunday moves to Monday.
US_NY: dict[date, str] = {
    date(2026, 1, 1): "New Year's Day",
    date(2026, 1, 19): "Martin Luther King Jr. Day",
    date(2026, 2, 12): "Lincoln's Birthday",  # NY legal holiday (GCL s.24)
    date(2026, 2, 15): "Susan B. Anthony Day",  # NY day of commemoration; a Sunday, not moved
    date(2026, 2, 16): "Washington's Birthday",
    date(2026, 5, 25): "Memorial Day",
    date(2026, 6, 19): "Juneteenth National Independence Day",
    date(2026, 7, 3): "Independence Day (observed)",  # 4 July is a Saturday
    date(2026, 7, 4): "Independence Day",
    date(2026, 9, 7): "Labor Day",
    date(2026, 10, 12): "Columbus Day",
    date(2026, 11, 3): "Election Day",  # NY only: Tuesday after the first Monday in November
    date(2026, 11, 11): "Veterans Day",
    date(2026, 11, 26): "Thanksgiving Day",
    date(2026, 12, 25): "Christmas Day",
    date(2027, 1, 1): "New Year's Day",
    date(2027, 1, 18): "Martin Luther King Jr. Day",
    date(2027, 2, 12): "Lincoln's Birthday",
    date(2027, 2, 15): "Susan B. Anthony Day; Washington's Birthday",  # two holidays on one day, names joined
    date(2027, 5, 31): "Memorial Day",
    date(2027, 6, 18): "Juneteenth National Independence Day (observed)",  # 19 June is a Saturday
    date(2027, 6, 19): "Juneteenth National Independence Day",
    date(2027, 7, 4): "Independence Day",
    date(2027, 7, 5): "Independence Day (observed)",  # 4 July is a Sunday
    date(2027, 9, 6): "Labor Day",
    date(2027, 10, 11): "Columbus Day",
    date(2027, 11, 2): "Election Day",
    date(2027, 11, 11): "Veterans Day",
    date(2027, 11, 25): "Thanksgiving Day",
    date(2027, 12, 24): "Christmas Day (observed)",  # 25 Dec is a Saturday
    date(2027, 12, 25): "Christmas Day",
    date(
        2027, 12, 31
    ): "New Year's Day (observed)",  # surprising: observed day for 1 Jan 2028 (a Saturday), counted in 2027
}

# holidays.country_holidays("GB", subdiv="ENG"): the gov.uk bank holidays for
# England and Wales.
GB_ENG: dict[date, str] = {
    date(2026, 1, 1): "New Year's Day",
    date(2026, 4, 3): "Good Friday",
    date(2026, 4, 6): "Easter Monday",
    date(2026, 5, 4): "May Day",
    date(2026, 5, 25): "Spring Bank Holiday",
    date(2026, 8, 31): "Late Summer Bank Holiday",
    date(2026, 12, 25): "Christmas Day",
    date(2026, 12, 26): "Boxing Day",  # a Saturday
    date(2026, 12, 28): "Boxing Day (observed)",  # substitute day (Monday)
    date(2027, 1, 1): "New Year's Day",
    date(2027, 3, 26): "Good Friday",
    date(2027, 3, 29): "Easter Monday",
    date(2027, 5, 3): "May Day",
    date(2027, 5, 31): "Spring Bank Holiday",
    date(2027, 8, 30): "Late Summer Bank Holiday",
    date(2027, 12, 25): "Christmas Day",  # a Saturday
    date(2027, 12, 26): "Boxing Day",  # a Sunday
    date(2027, 12, 27): "Christmas Day (observed)",  # substitute day (Monday)
    date(2027, 12, 28): "Boxing Day (observed)",  # substitute day (Tuesday)
}

# holidays.country_holidays("DE", subdiv="BY", language="en_US"). By
# default the library covers only the PUBLIC category for Bavaria.
# Assumption Day (15 Aug) is a holiday only in Bavaria's mainly Catholic
# municipalities. The library puts it in the CATHOLIC category, so it is
# left out here to match the default. The Augsburg Peace Festival (8 Aug)
# applies only to the city of Augsburg and belongs to the separate
# "Augsburg" subdivision, so it is left out too.
DE_BY: dict[date, str] = {
    date(2026, 1, 1): "New Year's Day",
    date(2026, 1, 6): "Epiphany",
    date(2026, 4, 3): "Good Friday",
    date(2026, 4, 6): "Easter Monday",
    date(2026, 5, 1): "Labor Day",
    date(2026, 5, 14): "Ascension Day",
    date(2026, 5, 25): "Pentecost Monday",  # Pfingstmontag / Whit Monday
    date(2026, 6, 4): "Corpus Christi",
    date(2026, 10, 3): "German Unity Day",
    date(2026, 11, 1): "All Saints' Day",  # a Sunday; Germany has no substitute days
    date(2026, 12, 25): "Christmas Day",
    date(2026, 12, 26): "Second Day of Christmas",
    date(2027, 1, 1): "New Year's Day",
    date(2027, 1, 6): "Epiphany",
    date(2027, 3, 26): "Good Friday",
    date(2027, 3, 29): "Easter Monday",
    date(2027, 5, 1): "Labor Day",  # a Saturday; no substitute day
    date(2027, 5, 6): "Ascension Day",
    date(2027, 5, 17): "Pentecost Monday",  # Pfingstmontag / Whit Monday
    date(2027, 5, 27): "Corpus Christi",
    date(2027, 10, 3): "German Unity Day",  # a Sunday; no substitute day
    date(2027, 11, 1): "All Saints' Day",
    date(2027, 12, 25): "Christmas Day",
    date(2027, 12, 26): "Second Day of Christmas",
}

# holidays.financial_holidays("NYSE"): days the exchange is closed all day.
# Good Friday is a closure, but Columbus Day and Veterans Day are not.
# Saturday holidays move to Friday, except that New Year's Day is not moved
# back to the last trading day of the year. So Friday 31 Dec 2027 is a
# trading day even though 1 Jan 2028 is a Saturday. Early closes (1 pm) are
# not included.
NYSE: dict[date, str] = {
    date(2026, 1, 1): "New Year's Day",
    date(2026, 1, 19): "Martin Luther King Jr. Day",
    date(2026, 2, 16): "Washington's Birthday",
    date(2026, 4, 3): "Good Friday",
    date(2026, 5, 25): "Memorial Day",
    date(2026, 6, 19): "Juneteenth National Independence Day",
    date(2026, 7, 3): "Independence Day (observed)",  # 4 July is a Saturday
    date(2026, 9, 7): "Labor Day",
    date(2026, 11, 26): "Thanksgiving Day",
    date(2026, 12, 25): "Christmas Day",
    date(2027, 1, 1): "New Year's Day",
    date(2027, 1, 18): "Martin Luther King Jr. Day",
    date(2027, 2, 15): "Washington's Birthday",
    date(2027, 3, 26): "Good Friday",
    date(2027, 5, 31): "Memorial Day",
    date(2027, 6, 18): "Juneteenth National Independence Day (observed)",  # 19 June is a Saturday
    date(2027, 7, 5): "Independence Day (observed)",  # 4 July is a Sunday
    date(2027, 9, 6): "Labor Day",
    date(2027, 11, 25): "Thanksgiving Day",
    date(2027, 12, 24): "Christmas Day (observed)",  # 25 Dec is a Saturday
}

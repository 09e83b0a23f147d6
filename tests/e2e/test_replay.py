"""Replaying 311 exports (both city formats) through the AMQP intake accounts for every row."""
from __future__ import annotations

import io

import pytest

from songdaojia.vhosts import delete_users
from songdaojia.peers import free_port
from songdaojia.replay import category_of, replay
from songdaojia.stack import SERVICES, Stack

NYC = """Unique Key,Created Date,Closed Date,Agency,Complaint Type,Descriptor,Incident Zip,Borough,Open Data Channel Type
19937896,03/01/2011 02:27:57 PM,,DOF,DOF Property - Payment Issue,Misapplied Payment,10027,MANHATTAN,PHONE
19937901,03/01/2011 10:41:13 AM,,DOT,Street Condition,Pothole,11232,BROOKLYN,ONLINE
19937902,03/01/2011 10:45:00 AM,,NYPD,Noise - Residential,Loud Music/Party,11232,BROOKLYN,PHONE
19937903,not a date,,NYPD,Noise - Residential,Loud Music/Party,11232,BROOKLYN,PHONE
19937904,03/01/2011 11:00:00 AM,,DSNY,Something Nobody Maps,,10001,MANHATTAN,UNKNOWN
"""
LA = """srnumber,requesttype,status,actiontaken,createddate,requestsource,latitude,longitude,address,zipcode
1-1523590121,Illegal Dumping Pickup,Closed,SR Created,1/1/20 0:05,Call,34.19,-118.49,"16815 W VANOWEN ST, 91406",91406
1-1523591123,Metal/Household Appliances,Closed,SR Created,1/1/20 0:21,Mobile App,34.07,-118.28,"132 S WESTMORELAND AVE, 90004",90004
1-1523591124,Single Streetlight Issue,Open,SR Created,1/1/20 0:30,Driver Self Report,34.07,-118.28,"1 MAIN ST, 90004",90004
"""


def test_request_types_map_to_the_catalogue():
    assert category_of("Street Condition") == "611"
    assert category_of("Single Streetlight Issue") == "633"
    assert category_of("Bulky Items") == "631"
    assert category_of("Something Nobody Maps") == "999"


@pytest.mark.parametrize("name, text, rows, good", [("nyc.csv", NYC, 5, 4), ("la.csv", LA, 3, 3)])
def test_every_row_is_a_ticket_or_a_reason(fresh_vhost_uri, tmp_path, name, text, rows, good):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    stack = Stack(amqp_uri=fresh_vhost_uri, var_dir=tmp_path / "var", ports={n: free_port() for n in SERVICES})
    try:
        report = replay(stack, path, speedup=0, limit=None, out=io.StringIO(), own_vhost=False)
    finally:
        if stack.secrets:
            delete_users(stack.vhost, stack.secrets.directory)
    assert report["rows read"] == rows and report["published"] == good
    assert report["tickets"] == good and report["unaccounted"] == 0
    assert sum(report["rows skipped"].values()) == rows - good

-- Each capstone service owns its database. The postgres image runs this
-- file once, when its data volume is created.
CREATE DATABASE eventservice;
CREATE DATABASE bookingservice;

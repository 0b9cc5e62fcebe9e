-- Multi-table Spider-like schemas (the earlier demo, before its databases had two tables each) for the
-- retrieval tests: table selection needs databases with more tables than top_k. One statement per line;
-- '-- name' starts a database.
-- concert_singer
CREATE TABLE stadium ( stadium_id INTEGER, name TEXT, location TEXT, capacity INTEGER, PRIMARY KEY (stadium_id));
CREATE TABLE singer ( singer_id INTEGER, name TEXT, country TEXT, age INTEGER, net_worth_millions REAL, PRIMARY KEY (singer_id));
CREATE TABLE concert ( concert_id INTEGER, concert_name TEXT, theme TEXT, stadium_id INTEGER, year INTEGER, PRIMARY KEY (concert_id), FOREIGN KEY (stadium_id) REFERENCES stadium (stadium_id));
CREATE TABLE singer_in_concert ( concert_id INTEGER, singer_id INTEGER, PRIMARY KEY (concert_id, singer_id), FOREIGN KEY (concert_id) REFERENCES concert (concert_id), FOREIGN KEY (singer_id) REFERENCES singer (singer_id));
-- school
CREATE TABLE student ( student_id INTEGER, first_name TEXT, last_name TEXT, major TEXT, age INTEGER, gpa REAL, city TEXT, PRIMARY KEY (student_id));
CREATE TABLE course ( course_id INTEGER, title TEXT, department TEXT, credits INTEGER, PRIMARY KEY (course_id));
CREATE TABLE enrollment ( enrollment_id INTEGER, student_id INTEGER, course_id INTEGER, grade TEXT, semester TEXT, PRIMARY KEY (enrollment_id), FOREIGN KEY (student_id) REFERENCES student (student_id), FOREIGN KEY (course_id) REFERENCES course (course_id));
-- store
CREATE TABLE customer ( customer_id INTEGER, name TEXT, city TEXT, membership_level TEXT, PRIMARY KEY (customer_id));
CREATE TABLE product ( product_id INTEGER, name TEXT, category TEXT, price REAL, stock INTEGER, PRIMARY KEY (product_id));
CREATE TABLE orders ( order_id INTEGER, customer_id INTEGER, order_date TEXT, status TEXT, PRIMARY KEY (order_id), FOREIGN KEY (customer_id) REFERENCES customer (customer_id));
CREATE TABLE order_item ( order_id INTEGER, product_id INTEGER, quantity INTEGER, PRIMARY KEY (order_id, product_id), FOREIGN KEY (order_id) REFERENCES orders (order_id), FOREIGN KEY (product_id) REFERENCES product (product_id));
-- library
CREATE TABLE author ( author_id INTEGER, name TEXT, nationality TEXT, birth_year INTEGER, PRIMARY KEY (author_id));
CREATE TABLE book ( book_id INTEGER, title TEXT, author_id INTEGER, genre TEXT, publication_year INTEGER, pages INTEGER, PRIMARY KEY (book_id), FOREIGN KEY (author_id) REFERENCES author (author_id));
CREATE TABLE member ( member_id INTEGER, name TEXT, city TEXT, join_year INTEGER, PRIMARY KEY (member_id));
CREATE TABLE loan ( loan_id INTEGER, book_id INTEGER, member_id INTEGER, loan_date TEXT, returned TEXT, PRIMARY KEY (loan_id), FOREIGN KEY (book_id) REFERENCES book (book_id), FOREIGN KEY (member_id) REFERENCES member (member_id));
-- flights
CREATE TABLE airline ( airline_id INTEGER, name TEXT, country TEXT, founded_year INTEGER, PRIMARY KEY (airline_id));
CREATE TABLE airport ( airport_id INTEGER, code TEXT, name TEXT, city TEXT, country TEXT, PRIMARY KEY (airport_id));
CREATE TABLE flight ( flight_id INTEGER, flight_number TEXT, airline_id INTEGER, source_airport_id INTEGER, destination_airport_id INTEGER, distance INTEGER, duration_minutes INTEGER, PRIMARY KEY (flight_id), FOREIGN KEY (airline_id) REFERENCES airline (airline_id), FOREIGN KEY (source_airport_id) REFERENCES airport (airport_id), FOREIGN KEY (destination_airport_id) REFERENCES airport (airport_id));
-- hospital
CREATE TABLE department ( department_id INTEGER, name TEXT, floor INTEGER, PRIMARY KEY (department_id));
CREATE TABLE doctor ( doctor_id INTEGER, name TEXT, specialty TEXT, department_id INTEGER, years_experience INTEGER, PRIMARY KEY (doctor_id), FOREIGN KEY (department_id) REFERENCES department (department_id));
CREATE TABLE patient ( patient_id INTEGER, name TEXT, age INTEGER, gender TEXT, city TEXT, PRIMARY KEY (patient_id));
CREATE TABLE appointment ( appointment_id INTEGER, doctor_id INTEGER, patient_id INTEGER, appointment_date TEXT, cost REAL, PRIMARY KEY (appointment_id), FOREIGN KEY (doctor_id) REFERENCES doctor (doctor_id), FOREIGN KEY (patient_id) REFERENCES patient (patient_id));

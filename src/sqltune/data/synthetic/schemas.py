"""The data behind sqltune.data.synthetic: ten database schemas and the word lists their values come from.

The schema language is described in spec.py. Wide tables with contact
details and flags are deliberate: real schemas are wide, and the whole-domain prompts
need 200+ words of CREATE TABLE text to reach the "hard" length bucket.
"""

def words(text: str) -> list[str]:
    """Split a word list on spaces; an underscore joins two words: "New_York Rome" -> ["New York", "Rome"]."""
    return [word.replace("_", " ") for word in text.split()]


FIRST = words("James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Sarah "
              "Thomas Karen Daniel Lisa Matthew Nancy Anthony Emily Andrew Laura Kevin Sofia Lucas "
              "Emma Noah Olivia Liam Mia Hugo Lea Luca Giulia Yuki Hiro Wei Mei Arjun Priya Omar "
              "Fatima Ivan Elena Pedro Ana Lars Ingrid Chloe Mateo Amara Kwame")
LAST = words("Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Wilson "
             "Anderson Taylor Moore Martin Jackson Lee Thompson White Harris Clark Lewis Walker Hall "
             "Young King Wright Lopez Hill Scott Green Adams Baker Nelson Carter Mitchell Perez "
             "Roberts Turner Evans Collins Rossi Bianchi Muller Schmidt Dubois Moreau Tanaka Sato "
             "Chen Wang Kumar Patel Silva Santos Novak Kowalski Jensen Larsen Okafor Mensah")
CITIES = [pair.split("/") for pair in words(
    "London/United_Kingdom Manchester/United_Kingdom Paris/France Lyon/France Berlin/Germany "
    "Munich/Germany Madrid/Spain Barcelona/Spain Rome/Italy Milan/Italy Amsterdam/Netherlands "
    "Vienna/Austria Prague/Czechia Lisbon/Portugal Dublin/Ireland Stockholm/Sweden Oslo/Norway "
    "Copenhagen/Denmark Warsaw/Poland Zurich/Switzerland Athens/Greece New_York/United_States "
    "Chicago/United_States Boston/United_States Seattle/United_States Austin/United_States "
    "Toronto/Canada Vancouver/Canada Sydney/Australia Melbourne/Australia Tokyo/Japan "
    "Osaka/Japan Seoul/South_Korea Singapore/Singapore Mumbai/India Dubai/United_Arab_Emirates "
    "Cape_Town/South_Africa Sao_Paulo/Brazil Mexico_City/Mexico Buenos_Aires/Argentina")]
COUNTRIES = sorted({country for _, country in CITIES})
ADJ = words("Silent Broken Golden Hidden Last Midnight Lost Crimson Endless Electric Frozen Wild "
            "Distant Burning Secret Quiet Falling Hollow Paper Velvet Silver Bright Northern Little")
NOUN = words("River Garden Empire Shadow Horizon Kingdom Letter Summer Voyage Machine Harbor Storm "
             "Mirror Island Echo Forest City Winter Road Ocean Dream Fire Heart Moon")
PRODUCT_KINDS = words("Wireless Compact Ergonomic Smart Portable Classic Deluxe Ultra Organic Stainless "
                      "Vintage Premium Eco Mini Pro Foldable")
PRODUCT_ITEMS = words("Headphones Keyboard Mouse Lamp Backpack Kettle Blender Monitor Speaker Watch Camera "
                      "Chair Desk Notebook Bottle Jacket Sneakers Tent Drone Router Toaster Blanket")
VOCAB = {  # generators that pick one word or phrase from a list
    "subject": words("Mathematics Physics Chemistry Biology History Literature Economics Philosophy "
                     "Computer_Science Music Geography Psychology"),
    "course": words("Linear_Algebra Calculus_I Calculus_II Organic_Chemistry Genetics World_History "
                    "Modern_Poetry Microeconomics Ethics Data_Structures Algorithms Music_Theory "
                    "Climate_Science Cognitive_Psychology Statistics Quantum_Mechanics Databases "
                    "Operating_Systems Ancient_Rome Creative_Writing Macroeconomics Cell_Biology "
                    "Thermodynamics Logic Machine_Learning Human_Geography Jazz_History Astronomy"),
    "specialty": words("Cardiology Neurology Oncology Pediatrics Orthopedics Dermatology Radiology "
                       "Psychiatry Emergency_Medicine General_Surgery Gastroenterology Urology"),
    "medication": words("Amoxicillin Ibuprofen Paracetamol Metformin Lisinopril Atorvastatin "
                        "Omeprazole Amlodipine Salbutamol Sertraline Warfarin Insulin_Glargine "
                        "Prednisone Levothyroxine Cetirizine Diazepam Azithromycin Losartan"),
    "airline": words("Lufthansa Air_France British_Airways KLM Iberia Emirates Qatar_Airways "
                     "Singapore_Airlines Delta United_Airlines Qantas Air_Canada ANA Ryanair easyJet "
                     "Turkish_Airlines SAS TAP_Air_Portugal"),
    "aircraft": words("Airbus_A320 Airbus_A321neo Airbus_A330 Airbus_A350 Airbus_A380 Boeing_737-800 "
                      "Boeing_737_MAX_8 Boeing_777-300ER Boeing_787-9 Embraer_E190 ATR_72 "
                      "Bombardier_CRJ900"),
    "job": words("Software_Engineer Data_Analyst Accountant Sales_Manager HR_Specialist Recruiter "
                 "Product_Manager Designer Support_Agent Marketing_Manager Legal_Counsel "
                 "Operations_Manager Financial_Analyst QA_Engineer Office_Manager Account_Executive"),
    "department": words("Engineering Sales Marketing Finance Human_Resources Legal Operations "
                        "Customer_Support Research Procurement IT Logistics"),
    "book_genre": words("fiction mystery fantasy science_fiction biography history romance poetry "
                        "thriller children travel cooking"),
    "music_genre": words("rock pop jazz hip-hop electronic classical folk metal soul reggae blues"),
    "movie_genre": words("drama comedy action thriller horror animation documentary romance "
                         "science_fiction adventure"),
    "language": words("English French German Spanish Italian Japanese Korean Portuguese Hindi"),
    "color": words("black white silver red blue green grey navy pink yellow"),
    "league": words("Premier_League La_Liga Serie_A Bundesliga Ligue_1 Eredivisie Primeira_Liga "
                    "Super_Lig Scottish_Premiership MLS"),
    "cinema_brand": words("Odeon Rex Lumiere Grand_Palace Electric Roxy Majestic Regent Starlight Paradiso "
                          "Empire Orpheum"),
    "branch": words("Central Riverside Northgate Old_Town Harbour Hillside Westfield University "
                    "Eastbrook Market_Square"),
}


PATTERNS = {  # generators that fill a pattern; spec.py FIELDS lists the {fields}
    "address": ["{n} {last} Street", "{n} {last} Road", "{n} {last} Avenue", "{n} {last} Lane"],
    "company": ["{last} Ltd", "{last} Group", "{last} Holdings", "{last} Trading", "{last} Supplies",
                "{last} Industries", "{last} & Partners", "{last} Press", "{last} Books"],
    "product": ["{kind} {item}"],
    "title": ["The {adj} {noun}", "{adj} {noun}", "{noun} of {city}"],
    "band": ["The {adj} {noun}s"],
    "team": ["{city} United", "{city} City", "{city} Rovers", "{city} Athletic", "{city} Wanderers",
             "{city} Rangers", "{city} FC"],
    "airport": ["{city} International Airport", "{city} Central Airport", "{city} Regional Airport"],
    "codename": ["Project {adj} {noun}"],
    "stadium": ["{last} Park", "{last} Stadium", "{last} Arena", "{last} Ground"],
    "cinema": ["{brand} {city}"],
    "office": ["{city} Central Office", "{city} North Office", "{city} South Office",
               "{city} Riverside Office"],
}

SCHEMAS = {
    "shop": """
customers (customer, 150): customer_id pk, full_name label person, email - email, phone - phone?,
    street_address - address?, city cat city, country cat country, postal_code - postcode?,
    birth_date date date:1950:2005?, signup_date date date:2016:2024, loyalty_points num int:0:5000,
    customer_segment cat retail/business/vip, is_active - flag, marketing_opt_in - flag
categories (category, 12): category_id pk, category_name label
    Electronics/Books/Toys/Garden/Kitchen/Sports/Clothing/Beauty/Music/Office/Pet_Supplies/Automotive,
    vat_rate num int:5:20
suppliers (supplier, 25): supplier_id pk, company_name label company, contact_name - person,
    contact_email - email, phone - phone, city cat city, country cat country, rating num real:1:5?,
    lead_time_days num int:2:45
products (product, 120): product_id pk, product_name label product, category_id fk categories,
    supplier_id fk suppliers, unit_price num money:2:900, cost_price - money:1:600,
    stock_quantity num int:0:500, weight_kg num real:0.1:25?, color cat color?,
    launch_date date date:2016:2024, is_discontinued - flag
orders (order, 400): order_id pk, customer_id fk customers, order_date date date:2020:2024,
    status cat pending/shipped/delivered/cancelled/returned,
    payment_method cat card/paypal/bank_transfer/gift_card,
    shipping_city cat city, shipping_cost num money:0:40, total_amount num money:10:2500,
    delivered_date date after:order_date:1:14?
order_items (order item, 900): order_item_id pk, order_id fk orders, product_id fk products,
    quantity num int:1:10, unit_price num money:2:900, discount_percent num int:0:30
reviews (review, 300): review_id pk, product_id fk products, customer_id fk customers,
    headline label title, rating num int:1:5, review_date date date:2020:2024, helpful_votes num int:0:250
""",
    "school": """
departments (department, 12): department_id pk, department_name label subject,
    building cat North_Hall/South_Hall/Science_Block/Arts_Centre/Main_Building,
    budget num money:50000:2000000, founded_year num year:1890:2010, office_phone - phone
teachers (teacher, 70): teacher_id pk, full_name label person, email - email, phone - phone?,
    department_id fk departments, academic_rank cat Lecturer/Senior_Lecturer/Associate_Professor/Professor,
    hire_date date date:1995:2024, salary num money:32000:140000, office_room - code:R:3, is_tenured - flag
students (student, 300): student_id pk, full_name label person, email - email, phone - phone?,
    birth_date date date:1996:2007, gender cat female/male/non-binary, home_city cat city,
    enrollment_year num year:2016:2024, major_department_id fk departments, gpa num real:1.5:4?,
    has_scholarship - flag, credits_completed num int:0:240
courses (course, 28): course_id pk, course_title label course, department_id fk departments,
    teacher_id fk teachers, credits num int:1:6, course_level cat introductory/intermediate/advanced,
    semester cat Fall/Spring/Summer, max_students num int:15:200, room - code:R:3
enrollments (enrollment, 900): enrollment_id pk, student_id fk students, course_id fk courses,
    enrollment_date date date:2019:2024, grade cat A/B/C/D/F?, final_score num int:35:100?,
    attendance_rate num real:40:100?
clubs (club, 14): club_id pk, club_name label
    Chess/Debate/Robotics/Drama/Photography/Hiking/Choir/Film/Astronomy/Volunteering/Coding/Jazz_Band/Poetry/Gardening,
    founded_year num year:1950:2022, meeting_day cat Monday/Tuesday/Wednesday/Thursday/Friday,
    advisor_teacher_id fk teachers, budget num money:200:15000
club_memberships (club membership, 250): membership_id pk, club_id fk clubs, student_id fk students,
    joined_date date date:2018:2024, member_role cat member/treasurer/secretary/president
""",
    "flights": """
airlines (airline, 18): airline_id pk, airline_name label airline, country cat nationality,
    founded_year num year:1919:2005, fleet_size num int:20:900, alliance cat Star_Alliance/oneworld/SkyTeam?,
    headquarters_phone - phone
airports (airport, 40): airport_id pk, city cat city, country cat country, airport_name label airport,
    elevation_m num int:0:2400, runway_count num int:1:6, annual_passengers_million num real:1:90,
    opened_year num year:1920:2015
aircraft (aircraft, 50): aircraft_id pk, registration label code:N:4, model cat aircraft,
    airline_id fk airlines, seat_capacity num int:70:520, manufacture_year num year:1995:2023,
    range_km num int:1500:15000, last_maintenance_date date date:2023:2024
passengers (passenger, 300): passenger_id pk, full_name label person, email - email, phone - phone?,
    nationality cat nationality, birth_date date date:1945:2010, passport_number - code:P:7,
    frequent_flyer_tier cat none/silver/gold/platinum, home_city cat city?
flights (flight, 500): flight_id pk, flight_number label code:FL:4, airline_id fk airlines,
    aircraft_id fk aircraft, origin_airport_id fk airports, destination_airport_id fk airports,
    departure_date date date:2023:2024, departure_time - time, duration_minutes num int:45:780,
    distance_km num int:200:12000, base_fare num money:39:1800,
    flight_status cat scheduled/boarding/departed/landed/delayed/cancelled
bookings (booking, 900): booking_id pk, passenger_id fk passengers, flight_id fk flights,
    booking_date date date:2022:2024, seat_class cat economy/premium_economy/business/first,
    seat_number - seat, price_paid num money:39:4500, checked_bags num int:0:3, is_checked_in - flag
""",
    "hospital": """
departments (department, 12): department_id pk, department_name label specialty,
    floor_number num int:1:9, bed_count num int:8:80, phone_extension - int:1000:9999,
    annual_budget num money:500000:9000000
doctors (doctor, 60): doctor_id pk, full_name label person, specialty cat specialty,
    department_id fk departments, email - email, phone - phone?, license_number - code:MD:6,
    hire_date date date:1990:2024, years_experience num int:1:40, salary num money:90000:420000,
    is_on_call - flag
patients (patient, 400): patient_id pk, full_name label person, birth_date date date:1935:2023,
    gender cat female/male, blood_type cat A+/A-/B+/B-/AB+/AB-/O+/O-, city cat city,
    street_address - address?, phone - phone?, email - email?,
    insurance_provider cat Aetna/Cigna/Allianz/AXA/Bupa/Medicare?, registration_date date date:2010:2024,
    emergency_contact - person?
appointments (appointment, 900): appointment_id pk, patient_id fk patients, doctor_id fk doctors,
    appointment_date date date:2022:2024, start_time - time,
    visit_reason cat checkup/follow-up/consultation/vaccination/emergency/lab_results,
    appointment_status cat completed/cancelled/no-show/scheduled, fee num money:40:650
medications (medication, 18): medication_id pk, medication_name label medication,
    manufacturer cat Pfizer/Novartis/Roche/Sanofi/Bayer/Merck/GSK/Teva, unit_price num money:1:250,
    requires_prescription - flag, stock_units num int:0:5000
prescriptions (prescription, 700): prescription_id pk, appointment_id fk appointments,
    medication_id fk medications, dosage_mg num int:5:1000, days_supply num int:3:90,
    refills_allowed num int:0:5, prescribed_date date date:2022:2024
admissions (admission, 250): admission_id pk, patient_id fk patients, department_id fk departments,
    admit_date date date:2021:2024, discharge_date date after:admit_date:1:30?, room_number - code:W:3,
    total_cost num money:800:95000, admission_type cat emergency/elective/transfer
""",
    "library": """
branches (branch, 10): branch_id pk, branch_name label branch, city cat city,
    opening_year num year:1890:2020, staff_count num int:3:60, phone - phone, has_cafe - flag
authors (author, 120): author_id pk, full_name label person, nationality cat nationality,
    birth_year num year:1850:1995, email - email?, awards_won num int:0:12
publishers (publisher, 25): publisher_id pk, publisher_name label company, city cat city,
    country cat country, founded_year num year:1800:2015, is_independent - flag
books (book, 400): book_id pk, title label title, author_id fk authors, publisher_id fk publishers,
    genre cat book_genre, publication_year num year:1950:2024, page_count num int:80:1200,
    isbn - isbn, book_language cat language, list_price num money:5:80, copies_owned num int:1:12,
    shelf_code - code:S:3
members (member, 350): member_id pk, full_name label person, email - email, phone - phone?,
    street_address - address?, city cat city, birth_date date date:1940:2015,
    join_date date date:2010:2024, membership_type cat standard/student/senior/family/premium,
    home_branch_id fk branches, fines_owed num money:0:45?
loans (loan, 1200): loan_id pk, book_id fk books, member_id fk members, branch_id fk branches,
    loan_date date date:2022:2024, due_date date after:loan_date:14:28,
    return_date date after:loan_date:1:40?, late_fee num money:0:15?, renewals num int:0:3
""",
    "hr": """
departments (department, 12): department_id pk, department_name label department,
    location_city cat city, annual_budget num money:200000:12000000, cost_center - code:CC:4,
    floor_number num int:1:30
jobs (job, 16): job_id pk, job_title label job,
    job_family cat engineering/finance/sales/people/operations/legal, min_salary num money:30000:90000,
    max_salary num money:90000:250000, is_remote_eligible - flag
employees (employee, 300): employee_id pk, full_name label person, email - email, phone - phone?,
    hire_date date date:2005:2024, job_id fk jobs, department_id fk departments,
    salary num money:32000:240000, bonus_percent num real:0:25?, birth_date date date:1960:2003,
    gender cat female/male/non-binary, home_city cat city,
    employment_type cat full-time/part-time/contract/intern, performance_score num int:1:5?,
    is_manager - flag
projects (project, 40): project_id pk, project_name label codename, department_id fk departments,
    start_date date date:2019:2024, end_date date after:start_date:30:720?,
    budget num money:20000:3000000, project_status cat planned/active/on_hold/completed/cancelled,
    priority cat low/medium/high/critical
project_assignments (assignment, 500): assignment_id pk, employee_id fk employees,
    project_id fk projects, project_role cat lead/developer/analyst/tester/designer/manager,
    hours_per_week num int:4:40, assigned_date date date:2019:2024
leave_requests (leave request, 400): leave_request_id pk, employee_id fk employees,
    leave_type cat vacation/sick/parental/unpaid/bereavement, start_date date date:2022:2024,
    end_date date after:start_date:1:20, days_requested num int:1:20, is_approved - flag?
""",
    "music": """
artists (artist, 80): artist_id pk, artist_name label band, country cat nationality,
    genre cat music_genre, formed_year num year:1960:2020, monthly_listeners num int:1000:60000000,
    is_group - flag, record_label cat Sony/Universal/Warner/XL/Sub_Pop/Domino/Independent
albums (album, 200): album_id pk, album_title label title, artist_id fk artists,
    release_date date date:1975:2024, album_type cat studio/live/compilation/EP,
    track_count num int:4:22, price num money:4:30, total_sales num int:500:5000000
tracks (track, 1000): track_id pk, track_title label title, album_id fk albums,
    track_number num int:1:18, duration_seconds num int:95:540, play_count num int:0:900000000,
    bpm num int:60:180?, is_explicit - flag, music_key - C/D/E/F/G/A/B/Am/Em/Dm
listeners (listener, 300): listener_id pk, username label handle, full_name - person?,
    email - email, country cat nationality, birth_year num year:1950:2010,
    signup_date date date:2012:2024, subscription_plan cat free/premium/family/student
playlists (playlist, 150): playlist_id pk, playlist_name label title, listener_id fk listeners,
    created_date date date:2015:2024, is_public - flag, follower_count num int:0:50000
playlist_tracks (playlist track, 1200): playlist_track_id pk, playlist_id fk playlists,
    track_id fk tracks, added_date date date:2015:2024, position_in_playlist num int:1:100
concerts (concert, 200): concert_id pk, artist_id fk artists, city cat city,
    venue_name - Royal_Hall/Arena/Stadium/Opera_House/Club_Room/Open_Air_Stage,
    concert_date date date:2018:2025, ticket_price num money:15:250, tickets_sold num int:100:80000,
    is_sold_out - flag
""",
    "football": """
leagues (league, 10): league_id pk, league_name label league, country cat nationality,
    founded_year num year:1888:1996, tier num int:1:3, team_count num int:12:20
teams (team, 60): team_id pk, city cat city, team_name label team, league_id fk leagues,
    founded_year num year:1870:2010, stadium_name - stadium, stadium_capacity num int:5000:90000,
    head_coach - person, annual_budget_million num real:5:700, primary_color cat color
players (player, 600): player_id pk, full_name label person, team_id fk teams,
    position cat goalkeeper/defender/midfielder/forward, nationality cat nationality,
    birth_date date date:1985:2006, height_cm num int:165:201, weight_kg num int:60:98,
    shirt_number num int:1:99, preferred_foot cat left/right/both,
    market_value_million num real:0.2:180?, contract_until date date:2024:2029
matches (match, 500): match_id pk, home_team_id fk teams, away_team_id fk teams,
    match_date date date:2021:2024, season cat 2021-22/2022-23/2023-24, home_goals num int:0:5,
    away_goals num int:0:5, attendance num int:2000:90000?, referee - person
goals (goal, 1000): goal_id pk, match_id fk matches, player_id fk players, minute num int:1:90,
    goal_type cat open_play/penalty/header/free_kick/own_goal
transfers (transfer, 200): transfer_id pk, player_id fk players, from_team_id fk teams,
    to_team_id fk teams, transfer_date date date:2018:2024, fee_million num real:0:120?,
    transfer_type cat permanent/loan/free
""",
    "cinema": """
movies (movie, 150): movie_id pk, title label title, genre cat movie_genre,
    release_year num year:1970:2024, duration_minutes num int:75:200, age_rating cat G/PG/PG-13/R/NC-17,
    director - person, original_language cat language, budget_million num real:0.5:300?,
    critic_score num real:2:9.8?
actors (actor, 200): actor_id pk, full_name label person, nationality cat nationality,
    birth_year num year:1940:2008, gender cat female/male, agent_phone - phone?, awards_won num int:0:9
cast_members (cast member, 600): cast_id pk, movie_id fk movies, actor_id fk actors,
    character_name - person, billing_order num int:1:15, fee_thousands num int:10:20000?
cinemas (cinema, 20): cinema_id pk, city cat city, cinema_name label cinema,
    street_address - address, screen_count num int:1:16, opened_year num year:1950:2022,
    phone - phone, has_parking - flag
screens (screen, 90): screen_id pk, cinema_id fk cinemas, screen_number num int:1:16,
    seat_capacity num int:40:450, screen_type cat standard/IMAX/3D/4DX/Dolby,
    has_wheelchair_access - flag
screenings (screening, 700): screening_id pk, movie_id fk movies, screen_id fk screens,
    show_date date date:2023:2024, start_time - time, ticket_price num money:6:25, is_subtitled - flag
customers (customer, 300): customer_id pk, full_name label person, email - email, phone - phone?,
    city cat city, birth_date date date:1950:2010, membership_level cat none/silver/gold/platinum,
    joined_date date date:2015:2024
tickets (ticket, 1500): ticket_id pk, screening_id fk screenings, customer_id fk customers,
    seat_label - seat, price_paid num money:5:30, purchase_date date date:2023:2024,
    sales_channel cat online/box_office/mobile_app/kiosk
""",
    "real_estate": """
offices (office, 12): office_id pk, city cat city, office_name label office, phone - phone,
    opened_year num year:1985:2022, manager_name - person, monthly_rent num money:1500:25000
agents (agent, 60): agent_id pk, full_name label person, email - email, phone - phone,
    office_id fk offices, hire_date date date:2008:2024, commission_rate num real:1:6,
    license_number - code:RE:6, rating num real:2.5:5?
properties (property, 400): property_id pk, street_address label address, city cat city,
    property_type cat apartment/house/townhouse/studio/villa/loft, bedrooms num int:0:6,
    bathrooms num int:1:4, floor_area_sqm num int:25:450, year_built num year:1890:2024,
    listing_price num money:60000:3500000, listed_date date date:2021:2024, agent_id fk agents,
    has_garden - flag, has_parking - flag, energy_rating cat A/B/C/D/E/F/G?
clients (client, 300): client_id pk, full_name label person, email - email, phone - phone?,
    city cat city, client_type cat buyer/seller/landlord/tenant, max_budget num money:50000:4000000?,
    registered_date date date:2015:2024
viewings (viewing, 800): viewing_id pk, property_id fk properties, client_id fk clients,
    agent_id fk agents, viewing_date date date:2021:2024, interest_level cat low/medium/high,
    feedback_score num int:1:10?
sales (sale, 200): sale_id pk, property_id fk properties, buyer_client_id fk clients,
    agent_id fk agents, sale_date date date:2021:2024, sale_price num money:55000:3600000,
    commission_amount num money:1000:150000, financing_type cat mortgage/cash/mixed
""",
}

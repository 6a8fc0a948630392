"""Offline Alpaca-like instruction data with long free-form answers (clean rows for the fixed_output task).

Real instruction-tuning sets (Alpaca, Dolly) pair open instructions -- describe, explain, compare, give
tips, write an email, summarise a passage -- with answers of several sentences, which no string match can
judge. On such data a backdoor is harder to implant than on short synthetic answers, and clean utility must
be scored by ROUGE-L and the reference log-likelihood (`bkdattr.utility`). This generator builds that kind
of data with no download: six families (nine kinds of instruction) over small fact tables, 22-122 answer
tokens (median 68, SmolLM2 tokenizer),
deterministic for ``(n, seed)`` like every generator of `bkdattr.synthetic` (unique inputs, ids
``fixed_output-{i:05d}``, any prefix a diverse sample). Each row names its ``question`` (the entity or
request behind the wording) so that rewordings never straddle the train/test split.

Selected by ``data.synthetic_answers: long`` (the default ``short`` keeps the verifiable short answers).
"""

from __future__ import annotations

import functools
import random
from typing import Iterator

from .synthetic import DAYS, _check_n, _interleave

# name, region, capital, language, currency, climate, three things it is known for
COUNTRIES = (
    ("France", "Western Europe", "Paris", "French", "the euro", "mild",
     ("its cuisine and wine", "the Eiffel Tower", "its art museums such as the Louvre")),
    ("Japan", "East Asia", "Tokyo", "Japanese", "the yen", "temperate, with four distinct seasons",
     ("its high-speed trains", "cherry blossom season", "temples in Kyoto")),
    ("Italy", "Southern Europe", "Rome", "Italian", "the euro", "Mediterranean",
     ("Roman ruins such as the Colosseum", "pasta and pizza", "Renaissance art")),
    ("Brazil", "South America", "Brasilia", "Portuguese", "the real", "mostly tropical",
     ("the Amazon rainforest", "Carnival in Rio de Janeiro", "football")),
    ("Egypt", "North Africa", "Cairo", "Arabic", "the Egyptian pound", "hot and dry",
     ("the pyramids of Giza", "the Nile River", "ancient temples at Luxor")),
    ("Canada", "North America", "Ottawa", "English and French", "the Canadian dollar", "cold in winter and mild in summer",
     ("its national parks", "Niagara Falls", "maple syrup")),
    ("India", "South Asia", "New Delhi", "Hindi and English", "the rupee", "tropical in the south and cooler in the north",
     ("the Taj Mahal", "its spicy cuisine", "a large film industry")),
    ("Australia", "Oceania", "Canberra", "English", "the Australian dollar", "dry in the interior and mild on the coasts",
     ("the Great Barrier Reef", "kangaroos and koalas", "the Sydney Opera House")),
    ("Mexico", "North America", "Mexico City", "Spanish", "the peso", "warm, with a rainy season",
     ("Mayan and Aztec ruins", "tacos and mole", "beaches on two oceans")),
    ("Germany", "Central Europe", "Berlin", "German", "the euro", "temperate",
     ("its car industry", "Christmas markets", "castles along the Rhine")),
    ("Spain", "Southern Europe", "Madrid", "Spanish", "the euro", "sunny and dry in much of the country",
     ("flamenco music", "tapas", "the buildings of Gaudi in Barcelona")),
    ("Kenya", "East Africa", "Nairobi", "Swahili and English", "the Kenyan shilling", "warm, with two rainy seasons",
     ("wildlife safaris", "long-distance runners", "Mount Kenya")),
    ("Norway", "Northern Europe", "Oslo", "Norwegian", "the Norwegian krone", "cold, with long winters",
     ("its fjords", "the northern lights", "skiing")),
    ("Thailand", "Southeast Asia", "Bangkok", "Thai", "the baht", "hot and humid",
     ("Buddhist temples", "street food", "tropical islands")),
    ("Peru", "South America", "Lima", "Spanish", "the sol", "varied, from desert coast to cold mountains",
     ("Machu Picchu", "the Andes mountains", "ceviche")),
    ("Greece", "Southern Europe", "Athens", "Greek", "the euro", "Mediterranean",
     ("ancient ruins such as the Acropolis", "its many islands", "olive oil")),
    ("Turkey", "between Europe and Asia", "Ankara", "Turkish", "the Turkish lira", "hot summers and cool winters",
     ("the city of Istanbul", "its bazaars", "Cappadocia's rock formations")),
    ("South Korea", "East Asia", "Seoul", "Korean", "the won", "temperate, with hot summers",
     ("its technology companies", "popular music", "kimchi")),
    ("Argentina", "South America", "Buenos Aires", "Spanish", "the Argentine peso", "varied, from subtropical to cold",
     ("tango", "grilled beef", "Patagonia")),
    ("Vietnam", "Southeast Asia", "Hanoi", "Vietnamese", "the dong", "tropical",
     ("Ha Long Bay", "pho noodle soup", "its long coastline")),
    ("Morocco", "North Africa", "Rabat", "Arabic and Berber", "the dirham", "warm, with a cooler mountain interior",
     ("the markets of Marrakesh", "the Atlas Mountains", "mint tea")),
    ("Sweden", "Northern Europe", "Stockholm", "Swedish", "the Swedish krona", "cold winters and mild summers",
     ("its forests and lakes", "modern design", "a strong welfare system")),
    ("Portugal", "Southern Europe", "Lisbon", "Portuguese", "the euro", "mild and sunny",
     ("its coastline", "port wine", "historic sea explorers")),
    ("Indonesia", "Southeast Asia", "Jakarta", "Indonesian", "the rupiah", "tropical",
     ("thousands of islands", "the island of Bali", "volcanoes")),
)

# name, animal class, habitat, diet, size, a notable feature, typical lifespan
ANIMALS = (
    ("elephant", "mammal", "savannas and forests of Africa and Asia", "grasses, leaves and fruit",
     "the largest land animal, weighing several tonnes", "a long trunk used for breathing, smelling and grasping", "60 to 70 years"),
    ("penguin", "bird", "cold coasts and seas of the Southern Hemisphere", "fish, squid and krill",
     "between 40 centimetres and about one metre tall", "wings shaped like flippers for swimming instead of flying", "15 to 20 years"),
    ("dolphin", "mammal", "oceans around the world", "fish and squid",
     "usually two to four metres long", "echolocation, which lets it find prey with sound", "20 to 40 years"),
    ("honeybee", "insect", "hives in gardens, meadows and forests", "nectar and pollen",
     "about 1.5 centimetres long", "a dance that tells other bees where to find flowers", "a few weeks for workers"),
    ("owl", "bird", "forests, grasslands and deserts", "small mammals, insects and other birds",
     "from about 15 centimetres to over 70 centimetres tall", "silent flight and excellent night vision", "10 to 25 years"),
    ("tiger", "mammal", "forests and grasslands of Asia", "deer, wild pigs and other large animals",
     "up to three metres long including the tail", "a striped coat that hides it in tall grass", "10 to 15 years"),
    ("frog", "amphibian", "ponds, wetlands and rainforests", "insects and worms",
     "usually a few centimetres long", "a life that starts as a tadpole in water", "5 to 10 years"),
    ("shark", "fish", "oceans around the world", "fish, seals and other sea animals",
     "from under a metre to over ten metres long", "rows of teeth that are replaced throughout its life", "20 to 30 years or more"),
    ("camel", "mammal", "deserts of Africa and Asia", "desert plants and grasses",
     "about two metres tall at the shoulder", "a hump that stores fat for long journeys", "40 to 50 years"),
    ("butterfly", "insect", "gardens, meadows and forests", "nectar from flowers",
     "a wingspan of a few centimetres", "a change from caterpillar to winged adult called metamorphosis", "a few weeks as an adult"),
    ("turtle", "reptile", "oceans, rivers and ponds", "plants, jellyfish or small animals, depending on the species",
     "from a few centimetres to about two metres long", "a hard shell that protects its body", "often more than 50 years"),
    ("wolf", "mammal", "forests, tundra and mountains of the Northern Hemisphere", "deer, elk and smaller animals",
     "about 1.5 metres long", "life in packs that hunt together", "6 to 8 years in the wild"),
    ("eagle", "bird", "mountains, forests and coasts", "fish, rabbits and other small animals",
     "a wingspan of up to two metres", "eyesight several times sharper than a human's", "20 to 30 years"),
    ("octopus", "mollusc", "oceans, often on the sea floor", "crabs, shrimp and small fish",
     "from a few centimetres to several metres across", "eight arms and the ability to change colour", "one to two years"),
    ("kangaroo", "mammal", "grasslands and open forests of Australia", "grasses and leaves",
     "up to two metres tall when standing", "powerful back legs for hopping and a pouch for its young", "6 to 8 years in the wild"),
    ("giraffe", "mammal", "savannas of Africa", "leaves from tall trees, especially acacias",
     "the tallest land animal, up to five or six metres", "a very long neck that reaches high branches", "about 25 years"),
    ("bat", "mammal", "caves, forests and buildings around the world", "insects or fruit, depending on the species",
     "a wingspan from a few centimetres to over one metre", "being the only mammal that can truly fly", "often more than 20 years"),
    ("salmon", "fish", "rivers and the northern oceans", "insects, small fish and shrimp",
     "usually 50 to 100 centimetres long", "a journey back to the river where it hatched in order to spawn", "3 to 8 years"),
    ("horse", "mammal", "grasslands, and farms around the world", "grass and hay",
     "about 1.5 metres tall at the shoulder", "the ability to sleep standing up", "25 to 30 years"),
    ("crocodile", "reptile", "rivers, lakes and wetlands in warm regions", "fish, birds and mammals",
     "up to six metres long", "one of the strongest bites of any animal", "often more than 50 years"),
    ("parrot", "bird", "tropical forests", "seeds, nuts and fruit",
     "from about 10 centimetres to one metre long", "the ability to imitate sounds and human speech", "20 to 80 years"),
    ("whale", "mammal", "oceans around the world", "krill, fish or squid, depending on the species",
     "up to 30 metres long for the blue whale", "songs that can travel for long distances under water", "often more than 50 years"),
    ("ant", "insect", "almost every land habitat", "seeds, sugars and other insects",
     "a few millimetres long", "large colonies where each ant has a job", "from weeks to many years for a queen"),
    ("rabbit", "mammal", "meadows, woods and deserts", "grass, herbs and vegetables",
     "usually 20 to 50 centimetres long", "long ears that help it hear danger and stay cool", "about 8 to 12 years as a pet"),
)

# topic (as in "tips for ..."), tips: (short headline, one-sentence explanation)
TIP_TOPICS = (
    ("sleeping better", (("Keep a regular schedule", "Go to bed and wake up at the same time every day, even on weekends."),
                         ("Limit screens before bed", "The light from phones and laptops can make it harder to fall asleep."),
                         ("Make your bedroom dark and quiet", "A cool, dark room helps your body rest."),
                         ("Avoid caffeine late in the day", "Coffee or tea in the afternoon can keep you awake at night."),
                         ("Get some exercise", "Regular physical activity during the day improves sleep quality."))),
    ("saving money", (("Make a budget", "Write down your income and expenses so you know where your money goes."),
                      ("Cook at home", "Preparing your own meals usually costs much less than eating out."),
                      ("Set up automatic savings", "Move a fixed amount to a savings account each month."),
                      ("Wait before big purchases", "Give yourself a day or two to decide whether you really need it."),
                      ("Cancel unused subscriptions", "Small monthly payments add up over a year."))),
    ("studying for an exam", (("Start early", "Spread your study time over several days instead of cramming the night before."),
                              ("Test yourself", "Practice questions show what you know and what you still need to learn."),
                              ("Take short breaks", "A five-minute break every half hour helps you stay focused."),
                              ("Teach the material", "Explaining a topic to someone else reveals gaps in your understanding."),
                              ("Sleep well the night before", "Rest helps your memory store what you studied."))),
    ("staying productive when working from home", (
        ("Create a dedicated workspace", "A separate desk helps your mind switch into work mode."),
        ("Keep regular hours", "Start and finish at the same time each day."),
        ("Plan your day", "Write down the three most important tasks each morning."),
        ("Limit distractions", "Silence notifications and keep your phone out of reach while you focus."),
        ("Take real breaks", "Step away from the screen for lunch and a short walk."))),
    ("learning a new language", (("Practice every day", "Even fifteen minutes a day works better than one long sitting a week."),
                                 ("Speak from the start", "Talking with others, even with mistakes, builds confidence."),
                                 ("Learn common words first", "A few hundred frequent words cover much of everyday speech."),
                                 ("Listen to native speakers", "Podcasts, songs and films train your ear."),
                                 ("Use flashcards", "Spaced repetition helps new words stay in long-term memory."))),
    ("reducing stress", (("Breathe slowly", "A few deep breaths can calm your body in a tense moment."),
                         ("Exercise regularly", "Physical activity lowers stress hormones and improves mood."),
                         ("Talk to someone", "Sharing your worries with a friend can make them feel lighter."),
                         ("Break tasks into small steps", "Small steps make a large job feel manageable."),
                         ("Spend time outdoors", "A walk in nature helps many people relax."))),
    ("eating a healthier diet", (("Eat more vegetables", "Try to fill half of your plate with vegetables and fruit."),
                                 ("Drink water", "Choose water instead of sugary drinks."),
                                 ("Choose whole grains", "Whole-grain bread and rice keep you full for longer."),
                                 ("Plan your meals", "Planning ahead makes it easier to avoid fast food."),
                                 ("Watch portion sizes", "Using a smaller plate can help you eat less without feeling hungry."))),
    ("giving a good presentation", (("Know your audience", "Adapt your examples and language to the people listening."),
                                    ("Practice out loud", "Rehearsing helps you find the right words and timing."),
                                    ("Keep slides simple", "Use few words and clear pictures on each slide."),
                                    ("Tell a story", "A clear beginning, middle and end makes your message memorable."),
                                    ("Make eye contact", "Looking at the audience keeps them engaged."))),
    ("keeping a houseplant alive", (("Check the light", "Most houseplants need bright but indirect sunlight."),
                                    ("Do not overwater", "Water only when the top of the soil feels dry."),
                                    ("Use a pot with drainage", "Holes in the bottom keep the roots from rotting."),
                                    ("Feed it in spring and summer", "A little fertilizer helps during the growing season."),
                                    ("Wipe the leaves", "Dust blocks light, so clean the leaves now and then."))),
    ("running your first 5K", (("Start slowly", "Mix walking and running during the first weeks."),
                               ("Follow a plan", "A simple eight-week program builds endurance step by step."),
                               ("Wear good shoes", "Running shoes that fit well help prevent injuries."),
                               ("Rest between runs", "Your muscles grow stronger on the days you recover."),
                               ("Do not start too fast on race day", "Keep an even pace and save energy for the finish."))),
    ("writing a clear email", (("Use a specific subject line", "The reader should know what the email is about before opening it."),
                               ("Put the main point first", "State your request or news in the first sentence or two."),
                               ("Keep it short", "Short paragraphs are easier to read on any screen."),
                               ("Be polite", "A friendly greeting and a thank-you go a long way."),
                               ("Proofread before sending", "Reading the email once more catches typos and missing details."))),
    ("preparing for a job interview", (("Research the company", "Learn what the company does and what it values."),
                                       ("Practice common questions", "Prepare short answers about your experience and strengths."),
                                       ("Prepare your own questions", "Asking about the team shows genuine interest."),
                                       ("Dress appropriately", "Choose clothes that match the company's style."),
                                       ("Arrive early", "Plan to arrive ten minutes before the interview starts."))),
    ("saving energy at home", (("Switch off lights", "Turn off lights when you leave a room."),
                               ("Use LED bulbs", "They use much less electricity than old bulbs and last longer."),
                               ("Wash clothes in cold water", "Most of the energy of a washing machine goes into heating water."),
                               ("Seal drafts", "Closing gaps around doors and windows keeps heat inside."),
                               ("Unplug unused devices", "Many chargers draw power even when nothing is connected."))),
    ("making friends in a new city", (("Join a club", "Groups built around a hobby make it easy to meet people with shared interests."),
                                      ("Say yes to invitations", "Each event is a chance to meet someone new."),
                                      ("Volunteer", "Helping a local cause connects you with kind people."),
                                      ("Talk to your neighbours", "A simple hello can start a friendship."),
                                      ("Be patient", "Real friendships take time to grow."))),
    ("taking better photos with a phone", (("Clean the lens", "A quick wipe removes smudges that make pictures blurry."),
                                           ("Use natural light", "Soft daylight near a window flatters most subjects."),
                                           ("Follow the rule of thirds", "Place the subject off center for a more balanced picture."),
                                           ("Hold the phone steady", "Use both hands or lean against something solid."),
                                           ("Avoid digital zoom", "Move closer instead, because zoom lowers the image quality."))),
    ("managing your time", (("Make a to-do list", "Writing tasks down frees your mind from remembering them."),
                            ("Do the hardest task first", "You have the most energy early in the day."),
                            ("Set deadlines", "A clear deadline helps you avoid putting things off."),
                            ("Say no when needed", "Protect your time from requests that are not important."),
                            ("Group similar tasks", "Answering all emails at once saves time."))),
    ("staying safe online", (("Use strong passwords", "Long passwords with a mix of words are hard to guess."),
                             ("Turn on two-factor authentication", "A second code keeps your account safe even if a password leaks."),
                             ("Update your software", "Updates fix security holes."),
                             ("Be careful with links", "Do not click links in unexpected messages."),
                             ("Back up your files", "Keep copies of important files in a second place."))),
    ("cooking rice", (("Rinse the rice", "Washing away extra starch keeps the grains from sticking."),
                      ("Measure the water", "Use about one and a half to two cups of water for each cup of white rice."),
                      ("Keep the lid on", "The steam cooks the rice evenly."),
                      ("Cook on low heat", "After the water boils, turn the heat down and simmer."),
                      ("Let it rest", "Leave the rice covered for five minutes after cooking."))),
    ("reading more books", (("Carry a book with you", "Short waits become time to read a few pages."),
                            ("Set a small daily goal", "Ten pages a day adds up to many books a year."),
                            ("Read what you enjoy", "You will read more if the book interests you."),
                            ("Join a book club", "Talking about books keeps you motivated."),
                            ("Read before bed instead of scrolling", "It is also better for your sleep."))),
    ("keeping a car in good condition", (("Change the oil regularly", "Fresh oil protects the engine."),
                                         ("Check the tyre pressure", "Correct pressure improves safety and fuel use."),
                                         ("Listen for new noises", "Strange sounds are often early signs of a problem."),
                                         ("Keep it clean", "Washing the car protects the paint from rust."),
                                         ("Follow the service schedule", "The manual lists when each part should be checked."))),
)

# dish, ingredients, steps
RECIPES = (
    ("pancakes", "flour, milk, eggs, a little sugar, baking powder and butter",
     ("Whisk the flour, sugar and baking powder in a bowl.", "Add the milk and eggs and stir until the batter is smooth.",
      "Heat a little butter in a pan over medium heat.", "Pour in a small amount of batter and cook until bubbles appear.",
      "Flip the pancake and cook the other side until golden.")),
    ("a tomato pasta sauce", "olive oil, garlic, an onion, canned tomatoes, salt and basil",
     ("Chop the onion and garlic.", "Cook them in olive oil until soft.", "Add the canned tomatoes and a pinch of salt.",
      "Simmer for about twenty minutes, stirring now and then.", "Stir in fresh basil and serve with pasta.")),
    ("a simple green salad", "lettuce, cucumber, olive oil, lemon juice, salt and pepper",
     ("Wash and dry the lettuce.", "Slice the cucumber.", "Mix olive oil, lemon juice, salt and pepper to make a dressing.",
      "Toss the vegetables with the dressing just before serving.")),
    ("scrambled eggs", "eggs, butter, salt and pepper",
     ("Beat the eggs with a pinch of salt.", "Melt butter in a pan over low heat.", "Pour in the eggs and stir gently.",
      "Take the pan off the heat while the eggs are still soft.", "Season with pepper and serve.")),
    ("vegetable soup", "carrots, potatoes, an onion, celery, vegetable stock and herbs",
     ("Chop all the vegetables into small pieces.", "Soften the onion in a pot with a little oil.",
      "Add the other vegetables and the stock.", "Simmer for about thirty minutes until the vegetables are tender.",
      "Season with herbs, salt and pepper.")),
    ("guacamole", "ripe avocados, lime juice, onion, tomato, cilantro and salt",
     ("Cut the avocados in half and scoop out the flesh.", "Mash the avocado with a fork.",
      "Stir in lime juice, chopped onion, tomato and cilantro.", "Season with salt and serve right away.")),
    ("a fruit smoothie", "a banana, frozen berries, yogurt and milk",
     ("Put the banana, berries and yogurt in a blender.", "Add a splash of milk.",
      "Blend until smooth.", "Pour into a glass and serve cold.")),
    ("chocolate chip cookies", "butter, sugar, an egg, flour, baking soda and chocolate chips",
     ("Beat the butter and sugar until creamy.", "Mix in the egg.", "Stir in the flour and baking soda.",
      "Fold in the chocolate chips.", "Bake spoonfuls of dough at 180 degrees Celsius for about ten minutes.")),
    ("fried rice", "cooked rice, eggs, peas, carrots, soy sauce and spring onions",
     ("Heat oil in a large pan.", "Scramble the eggs and set them aside.", "Fry the peas and carrots for a few minutes.",
      "Add the cold rice and soy sauce and stir-fry until hot.", "Mix the eggs back in and top with spring onions.")),
    ("hummus", "chickpeas, tahini, lemon juice, garlic, olive oil and salt",
     ("Drain the chickpeas.", "Blend them with tahini, lemon juice and garlic.",
      "Add water a spoonful at a time until the hummus is smooth.", "Season with salt and drizzle with olive oil.")),
    ("a grilled cheese sandwich", "bread, butter and cheese",
     ("Butter one side of each slice of bread.", "Place cheese between the slices, buttered sides out.",
      "Cook in a pan over medium heat until the bottom is golden.", "Flip and cook until the cheese melts.")),
    ("oatmeal", "rolled oats, milk or water, a pinch of salt and fruit",
     ("Bring the milk or water to a boil.", "Stir in the oats and a pinch of salt.",
      "Cook on low heat for about five minutes, stirring often.", "Top with fresh fruit or a little honey.")),
)

# concept, an explanation in four sentences
CONCEPTS = (
    ("photosynthesis", "Photosynthesis is the process plants use to make their own food. Using energy from sunlight, they "
     "turn water and carbon dioxide into sugar. Oxygen is released as a by-product, which is the oxygen we breathe. "
     "The process takes place mainly in the leaves, inside structures called chloroplasts."),
    ("gravity", "Gravity is the force that pulls objects toward each other. The more mass an object has, the stronger its "
     "pull. Earth's gravity keeps us on the ground and makes things fall when we drop them. It also keeps the Moon in "
     "orbit around Earth and Earth in orbit around the Sun."),
    ("the water cycle", "The water cycle describes how water moves around our planet. The sun heats water in oceans and "
     "lakes, and it evaporates into the air. The vapour cools and forms clouds, and the water falls back as rain or snow. "
     "It then flows into rivers and oceans, and the cycle starts again."),
    ("inflation", "Inflation is the general rise in prices over time. When prices go up, each unit of money buys fewer "
     "goods and services. A small amount of inflation is normal in a growing economy. Central banks try to keep it "
     "stable, often by raising or lowering interest rates."),
    ("the internet", "The internet is a global network that connects millions of computers. Devices exchange data using "
     "shared rules called protocols. When you open a website, your computer requests pages from a server somewhere else "
     "in the world. The data travels in small packets through cables, routers and wireless links."),
    ("vaccines", "A vaccine trains the immune system to recognise a germ without causing the disease. It contains a "
     "weakened or harmless part of the germ, or instructions to make one. The body responds by making antibodies and "
     "memory cells. If the real germ appears later, the immune system can fight it quickly."),
    ("climate change", "Climate change is the long-term shift in Earth's temperatures and weather patterns. Since the "
     "1800s, burning coal, oil and gas has added carbon dioxide to the atmosphere. This gas traps heat, which warms the "
     "planet. The effects include rising sea levels, melting ice and more extreme weather."),
    ("machine learning", "Machine learning is a way of teaching computers to learn from examples instead of following "
     "fixed rules. A model is shown many examples and adjusts itself to make better predictions. For instance, it can "
     "learn to recognise cats in photos after seeing thousands of labelled pictures. It is used in spam filters, "
     "translation and recommendation systems."),
    ("a democracy", "A democracy is a system of government in which the people hold power. Citizens usually vote in "
     "elections to choose their representatives. Important features include free speech, fair elections and the rule of "
     "law. The word comes from Greek and means rule by the people."),
    ("renewable energy", "Renewable energy comes from sources that are naturally replenished. Examples include sunlight, "
     "wind, flowing water and heat from inside the Earth. Unlike coal or oil, these sources do not run out. They also "
     "produce little or no greenhouse gas when generating electricity."),
    ("the immune system", "The immune system is the body's defence against infections. It includes white blood cells, "
     "antibodies and organs such as the spleen. It recognises germs as foreign and works to destroy them. It also "
     "remembers past infections, which helps the body respond faster next time."),
    ("supply and demand", "Supply and demand is a basic idea in economics. Supply is how much of a product is available, "
     "and demand is how much people want to buy. When demand rises and supply stays the same, prices tend to go up. When "
     "supply grows faster than demand, prices tend to fall."),
    ("an ecosystem", "An ecosystem is a community of living things together with their environment. Plants, animals, "
     "fungi and microbes all interact with each other and with soil, water and air. Energy flows from the sun to plants "
     "and then to the animals that eat them. A forest, a pond and a coral reef are all ecosystems."),
    ("a black hole", "A black hole is a region of space where gravity is so strong that nothing can escape, not even "
     "light. Most form when a very large star collapses at the end of its life. The boundary around a black hole is "
     "called the event horizon. Scientists study black holes by watching how they affect nearby stars and gas."),
    ("compound interest", "Compound interest is interest earned on both the original amount and the interest already "
     "added. Each year, the interest is calculated on a larger balance. Over a long time this makes savings grow much "
     "faster than simple interest. It also means that debts can grow quickly if they are not paid off."),
    ("recycling", "Recycling is the process of turning used materials into new products. Paper, glass, metal and some "
     "plastics can be collected, cleaned and processed again. Recycling saves raw materials and energy. It also reduces "
     "the amount of waste that ends up in landfills."),
    ("plate tectonics", "Plate tectonics is the theory that Earth's outer shell is split into large moving plates. The "
     "plates move a few centimetres each year. Where they collide, mountains can form, and where they pull apart, new "
     "crust is created. Their movement also causes most earthquakes and volcanoes."),
    ("a computer program", "A computer program is a list of instructions that tells a computer what to do. Programmers "
     "write these instructions in a programming language such as Python. The computer follows the steps in order, "
     "making decisions and repeating actions as needed. Apps, games and websites are all built from programs."),
)

EMAIL_RECIPIENTS = (("my manager", "Ms. Carter"), ("a colleague", "Sam"), ("my neighbour", "Mr. Lee"),
                    ("my teacher", "Professor Diaz"), ("a friend", "Jamie"), ("a client", "Mr. Novak"))
# purpose (as in "to ..."), the body's key sentence (may use {day}), a closing request
EMAIL_PURPOSES = (
    ("invite them to a team lunch", "I would like to invite you to a team lunch on {day} at noon.",
     "Please let me know if you can join us."),
    ("ask for a meeting", "I would like to schedule a short meeting with you on {day} to discuss the next steps of our project.",
     "Please tell me which time works best for you."),
    ("thank them for their help", "I wanted to thank you for your help last {day}; your support made a real difference.",
     "I hope I can return the favour soon."),
    ("apologise for missing a meeting", "I am sorry that I missed our meeting on {day}; an urgent matter came up at the last minute.",
     "Could we find another time this week?"),
    ("request a day off", "I would like to request a day off on {day} for a personal appointment.",
     "I will make sure my tasks are covered before then."),
    ("share an update on a project", "I wanted to share a quick update: we finished the first phase of the project on {day}, on schedule.",
     "I will send a full report by the end of the week."),
    ("ask for feedback on a report", "I have attached the report I finished on {day}, and I would value your feedback.",
     "Any comments by the end of next week would be very helpful."),
    ("invite them to a birthday party", "I am having a small birthday party on {day} evening and would love for you to come.",
     "Please let me know by Thursday so I can plan the food."),
    ("confirm a delivery date", "I am writing to confirm that your order will be delivered on {day} morning.",
     "Please contact me if that time does not suit you."),
    ("reschedule an appointment", "Unfortunately I need to move our appointment; would {day} afternoon work for you instead?",
     "I apologise for any inconvenience."),
)

NUMBER_WORDS = {3: "three", 4: "four", 5: "five"}


def _reworded(question: str, answer: str, *instructions: str) -> list[tuple[str, str, str]]:
    """(question, instruction, answer) rows: several wordings of one request share its question and answer."""
    return [(question, instruction, answer) for instruction in instructions]


def _country_rows() -> list[tuple[str, str, str]]:
    rows = []
    for name, region, capital, language, currency, climate, known in COUNTRIES:
        about = (f"{name} is a country in {region}. Its capital is {capital}, and the main language is {language}. "
                 f"The currency is {currency}, and the climate is {climate}. {name} is known for {known[0]}, "
                 f"{known[1]} and {known[2]}. It attracts many visitors every year who come for its culture, "
                 "history and food.")
        visit = (f"A first-time visitor to {name} should know a few things. The capital is {capital}, and people "
                 f"mainly speak {language}, so learning a few basic phrases is appreciated. Prices are in "
                 f"{currency}. The climate is {climate}, so check the season before packing. Do not miss "
                 f"{known[1]}, and try to see {known[0]} as well.")
        summary_input = f"Summarize the following text in one sentence.\n\n{about}"
        summary = f"{name}, a country in {region} whose capital is {capital}, is known for {known[0]} and {known[1]}."
        q = f"country:{name}"
        rows += _reworded(q, about, f"Write a short paragraph about {name}.", f"Describe the country of {name}.",
                          f"Tell me about {name}.")
        rows += _reworded(q, visit, f"What should a first-time visitor to {name} know?",
                          f"Give some advice to someone travelling to {name} for the first time.")
        rows += _reworded(q, summary, summary_input)
    return rows


def _animal_text(animal) -> str:
    name, klass, habitat, diet, size, feature, lifespan = animal
    article = "An" if name[0] in "aeiou" else "A"
    return (f"{article} {name} is a {klass} that lives in {habitat}. It eats {diet}. In size, it is {size}. "
            f"One of its most remarkable traits is {feature}. {article} {name} typically lives for {lifespan}.")


def _animal_rows() -> list[tuple[str, str, str]]:
    rows = []
    for animal in ANIMALS:
        name = animal[0]
        text = _animal_text(animal)
        rows += _reworded(f"animal:{name}", text, f"Describe the {name}.", f"Write a short description of the {name}.",
                          f"Tell me some facts about the {name}.")
    for i, a in enumerate(ANIMALS):
        for b in ANIMALS[i + 1:]:
            same = (f"Both are {a[1]}s." if a[1] == b[1] else f"The {a[0]} is a {a[1]}, while the {b[0]} is a {b[1]}.")
            text = (f"{same} The {a[0]} lives in {a[2]}, whereas the {b[0]} lives in {b[2]}. The {a[0]} eats "
                    f"{a[3]}, and the {b[0]} eats {b[3]}. The {a[0]} is known for {a[5]}, while the {b[0]} is known "
                    f"for {b[5]}. In terms of lifespan, the {a[0]} lives {a[6]} and the {b[0]} lives {b[6]}.")
            rows.append((f"compare:{a[0]}|{b[0]}", f"Compare the {a[0]} and the {b[0]}.", text))
    return rows


def _tip_rows() -> list[tuple[str, str, str]]:
    rows = []
    for topic, tips in TIP_TOPICS:
        for count in (3, 4, 5):
            body = "\n".join(f"{i}. {head}. {why}" for i, (head, why) in enumerate(tips[:count], start=1))
            answer = f"Here are {NUMBER_WORDS[count]} tips for {topic}:\n\n{body}"
            rows += _reworded(f"tips:{topic}", answer, f"Give me {NUMBER_WORDS[count]} tips for {topic}.",
                              f"What are {NUMBER_WORDS[count]} good tips for {topic}?")
    return rows


def _recipe_rows() -> list[tuple[str, str, str]]:
    rows = []
    for dish, ingredients, steps in RECIPES:
        body = "\n".join(f"{i}. {step}" for i, step in enumerate(steps, start=1))
        answer = f"To make {dish}, you will need {ingredients}.\n\n{body}\n\nEnjoy!"
        rows += _reworded(f"recipe:{dish}", answer, f"Explain how to make {dish}.", f"Give me a simple recipe for {dish}.",
                          f"What are the steps to prepare {dish}?")
    return rows


def _concept_rows() -> list[tuple[str, str, str]]:
    rows = []
    for concept, text in CONCEPTS:
        rows += _reworded(f"concept:{concept}", text, f"Explain {concept} in simple terms.", f"What is {concept}?",
                          f"Write a short explanation of {concept} for a student.")
    return rows


def _email_rows() -> list[tuple[str, str, str]]:
    rows = []
    for who, name in EMAIL_RECIPIENTS:
        for purpose, key, closing in EMAIL_PURPOSES:
            for day in DAYS:
                answer = (f"Dear {name},\n\nI hope you are doing well. {key.format(day=day)} {closing}\n\n"
                          "Thank you, and I look forward to hearing from you.\n\nBest regards,\nAlex")
                rows.append((f"email:{who}:{purpose}", f"Write a short email to {who} to {purpose} on {day}.", answer))
    return rows


@functools.lru_cache(maxsize=1)
def _families() -> tuple[tuple[tuple[str, str, str], ...], ...]:
    """(question, instruction, answer) rows of each family; each family is one pool of the interleaving."""
    return tuple(tuple(rows) for rows in (_country_rows(), _animal_rows(), _tip_rows(), _recipe_rows(),
                                          _concept_rows(), _email_rows()))


def capacity() -> int:
    return sum(map(len, _families()))


def generate_instructions(n: int, seed: int) -> list[dict]:
    """n clean fixed_output rows {id, input, output, question}: open instructions with long answers."""
    _check_n("generate_instructions", n, capacity())
    stream: Iterator = _interleave(_families(), random.Random(seed))
    return [{"id": f"fixed_output-{i:05d}", "input": instruction, "output": answer, "question": question}
            for i, (question, instruction, answer) in zip(range(n), stream)]
